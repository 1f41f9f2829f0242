/**
 * One child process with its output kept line by line: the base of every process the tests and
 * the benchmarks start (service, simulator, redis-server, nginx). Waiting is on events (a line
 * printed, the exit), never on a fixed sleep.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** Every line the process printed, stdout and stderr, raw (the last `keepLines`). */
  output: string[];
  /** Resolves with the exit code (or the signal's name); settles once. */
  exited: Promise<number | string>;
  alive(): boolean;
  /** Resolves with the first line (already printed or future) that `pred` accepts. */
  waitForLine(pred: (line: string) => boolean, timeoutMs: number, what?: string): Promise<string>;
  /** Sends `signal` (if still running) and waits for the exit; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

export function startChild(
  command: string,
  args: string[],
  opts: SpawnOptions & { keepLines?: number; name?: string } = {},
): Child {
  const { keepLines = Infinity, name = command, ...spawnOpts } = opts;
  const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOpts });
  const output: string[] = [];
  const listeners = new Set<(line: string) => void>();
  for (const stream of [proc.stdout, proc.stderr]) {
    let buf = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        output.push(line);
        if (output.length > keepLines) output.shift();
        for (const l of listeners) l(line);
      }
    });
  }
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
    proc.once('error', (err) => {
      output.push(`${name}: ${err.message}`);
      resolve(-1);
    });
  });
  const alive = (): boolean => proc.exitCode === null && proc.signalCode === null;
  let done = false;
  void exited.then(() => (done = true));

  const waitForLine = (
    pred: (line: string) => boolean,
    timeoutMs: number,
    what = 'a matching line',
  ): Promise<string> =>
    new Promise((resolve, reject) => {
      for (const line of output) if (pred(line)) return resolve(line);
      const tail = (): string => output.slice(-30).join('\n');
      const finish = (): void => {
        clearTimeout(timer);
        listeners.delete(onLine);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${name}: no ${what} within ${timeoutMs} ms; output:\n${tail()}`));
      }, timeoutMs);
      const onLine = (line: string): void => {
        if (!pred(line)) return;
        finish();
        resolve(line);
      };
      listeners.add(onLine);
      void exited.then(() => {
        if (!listeners.has(onLine)) return;
        finish();
        reject(new Error(`${name} exited before ${what}; output:\n${tail()}`));
      });
    });

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000) => {
    if (!done && alive()) {
      proc.kill(signal);
      // A stopped (SIGSTOP) process would never act on the signal.
      if (signal !== 'SIGKILL' && signal !== 'SIGCONT') proc.kill('SIGCONT');
    }
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };

  return { proc, pid: proc.pid ?? -1, output, exited, alive, waitForLine, stop };
}

/** A JSON log line (pino), or undefined for anything else. */
export function parseLogLine(line: string): LogLine | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v = JSON.parse(line) as LogLine;
    return typeof v === 'object' && v !== null && typeof v.msg === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}
