/**
 * The Kentik simulator in a process of its own (sim-child.ts), behind a timestamping proxy, driven
 * over IPC. The benchmarks use it: chart rendering costs tens of ms of CPU, which must not land in
 * the load generator's process. Tests that need no timestamps start the simulator in-process
 * (`startSimulator` from kentik-simulator) and read its `stats()` directly.
 */
import path from 'node:path';
import type { ScriptedOutcome, SimulatorStats } from 'kentik-simulator';
import { startChild } from './process.ts';
import { TSX } from './service.ts';
import { ROOT } from './tmp.ts';

export interface UpstreamCall {
  hash: string | null;
  start: number;
  end: number;
  status: number;
}

export interface SimControl {
  /** KENTIK_API_URL for the service: the timestamping proxy in front of the simulator. */
  url: string;
  email: string;
  token: string;
  pid: number;
  setLatency(ms: number): Promise<void>;
  /** Merges a partial FaultConfig (see packages/kentik-simulator/README.md). */
  setFaults(faults: Record<string, unknown>): Promise<void>;
  /** The simulator's own counters (SimulatorStats: total, byStatus, byHash, inFlight, maxConcurrent). */
  stats(): Promise<SimulatorStats>;
  /** Queues scripted outcomes for the next calls (see packages/kentik-simulator/README.md). */
  script(outcomes: ScriptedOutcome[]): Promise<void>;
  /** Faults, script, counters and the call log back to the start. */
  reset(): Promise<void>;
  /** Chart calls the proxy saw since `since` (an index from a previous call, 0 at first). */
  calls(since?: number): Promise<{ calls: UpstreamCall[]; next: number }>;
  /** Renders queries once, bypassing the proxy, so the service's call finds them rendered. */
  warm(queries: unknown[]): Promise<void>;
  cpuMs(): Promise<number>;
  /** Answer chart calls at once with this PNG (made unique per call) instead of rendering; undefined: render again. */
  canned(png: Buffer | undefined): Promise<void>;
  stop(): Promise<void>;
}

export interface SimulatorProcessOptions {
  latencyMs?: number;
  /** Credentials it accepts (default the simulator's demo ones). */
  email?: string;
  token?: string;
}

export async function startSimulatorProcess(
  options: number | SimulatorProcessOptions = {},
): Promise<SimControl> {
  const opts = typeof options === 'number' ? { latencyMs: options } : options;
  const child = startChild(
    process.execPath,
    ['--import', TSX, path.join(ROOT, 'test/support/sim-child.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        SIM_LATENCY_MS: String(opts.latencyMs ?? 0),
        ...(opts.email ? { SIM_EMAIL: opts.email } : {}),
        ...(opts.token ? { SIM_TOKEN: opts.token } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      keepLines: 200,
      name: 'the simulator',
    },
  );
  const { proc, output } = child;
  let next = 1;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  const ready = new Promise<{ url: string; email: string; token: string; pid: number }>(
    (resolve, reject) => {
      proc.on('message', (msg: any) => {
        if (msg?.ready) return resolve(msg.ready);
        const p = pending.get(msg?.id);
        if (!p) return;
        pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.value);
        else p.reject(new Error(`simulator: ${msg.error}`));
      });
      void child.exited.then((code) => {
        const err = new Error(
          `simulator process exited (${code}):\n${output.slice(-20).join('\n')}`,
        );
        reject(err);
        for (const p of pending.values()) p.reject(err);
        pending.clear();
      });
    },
  );
  let timer: NodeJS.Timeout | undefined;
  const info = await Promise.race([
    ready,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`simulator did not start:\n${output.join('\n')}`)),
        30_000,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  const rpc = <T>(cmd: string, arg?: unknown): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      proc.send({ id, cmd, arg });
    });
  return {
    ...info,
    setLatency: (ms) => rpc('setFaults', { latencyMs: ms }),
    setFaults: (faults) => rpc('setFaults', faults),
    stats: () => rpc('stats'),
    script: (outcomes) => rpc('script', { outcomes }),
    reset: () => rpc('reset'),
    calls: (since = 0) => rpc('calls', { since }),
    warm: async (queries) => {
      const statuses = await rpc<number[]>('warm', { queries });
      const bad = statuses.filter((s) => s !== 200);
      if (bad.length > 0)
        throw new Error(`simulator answered ${bad.join(', ')} to a warm-up render`);
    },
    canned: (png) => rpc('canned', { png: png?.toString('base64') }),
    cpuMs: async () => {
      const u = await rpc<{ userMs: number; systemMs: number }>('cpu');
      return u.userMs + u.systemMs;
    },
    stop: async () => {
      // It exits when the IPC channel closes; SIGKILL if it has not within 10 s.
      if (proc.connected) proc.disconnect();
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await child.exited;
      clearTimeout(t);
    },
  };
}
