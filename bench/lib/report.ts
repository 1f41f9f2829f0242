import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

export type Status = 'pass' | 'FAIL' | 'info' | 'skipped';

/**
 * The numbers behind a checked row, for the chart: `value` against `target`, in one unit, and
 * which way is better. A ratio to a reference (service ÷ nginx) is its own value.
 */
export interface Measure {
  value: number;
  target: number;
  better: 'higher' | 'lower';
}

export interface Row {
  scenario: string;
  figure: string;
  value: string;
  target: string;
  status: Status;
  measure?: Measure;
}

/** How far a measure is from its target, as a multiple: ≥ 1 meets it, whichever way is better. */
export function score(m: Measure): number {
  if (m.better === 'higher') return m.target === 0 ? Infinity : m.value / m.target;
  return m.value === 0 ? Infinity : m.target / m.value;
}

export class Rows {
  readonly rows: Row[] = [];

  /** A figure with a target: pass/FAIL, or skipped when it could not be measured. */
  check(
    scenario: string,
    figure: string,
    value: string,
    target: string,
    ok: boolean | undefined,
    measure?: Measure,
  ): void {
    this.rows.push({
      scenario,
      figure,
      value,
      target,
      status: ok === undefined ? 'skipped' : ok ? 'pass' : 'FAIL',
      ...(measure && Number.isFinite(measure.value) ? { measure } : {}),
    });
  }

  info(scenario: string, figure: string, value: string, note = '—'): void {
    this.rows.push({ scenario, figure, value, target: note, status: 'info' });
  }

  get misses(): Row[] {
    return this.rows.filter((r) => r.status === 'FAIL');
  }
}

export function markdownTable(rows: readonly Row[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [
    '| scenario | figure | value | target | result |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const r of rows)
    lines.push(
      `| ${esc(r.scenario)} | ${esc(r.figure)} | ${esc(r.value)} | ${esc(r.target)} | ${r.status === 'FAIL' ? '**FAIL**' : r.status} |`,
    );
  return lines.join('\n');
}

export interface Machine {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
  kernel: string;
}

export function machine(): Machine {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    cpuModel =
      /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    // not Linux
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    kernel: os.release(),
  };
}

/** Linux pressure stall information: % of time some task waited for a CPU (avg10, avg60). */
export function cpuPressure(): { avg10: number; avg60: number } | undefined {
  try {
    const m = /^some avg10=([\d.]+) avg60=([\d.]+)/m.exec(
      readFileSync('/proc/pressure/cpu', 'utf8'),
    );
    return m ? { avg10: Number(m[1]), avg60: Number(m[2]) } : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (ms) of the whole machine, of this process tree (and kernel threads), and stolen by the hypervisor. */
export interface CpuSample {
  at: number;
  busyMs: number;
  stealMs: number;
  oursMs: number;
}

/** Linux only; undefined elsewhere. USER_HZ is 100 on Linux. */
export function cpuSample(): CpuSample | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const [user = 0, nice = 0, system = 0, , , , , steal = 0] = f;
    const stats = new Map<number, { ppid: number; ms: number }>();
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const x = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        // utime, stime, cutime, cstime: children that exited and were reaped count with their parent.
        stats.set(Number(name), {
          ppid: Number(x[1]),
          ms: (Number(x[11]) + Number(x[12]) + Number(x[13]) + Number(x[14])) * 10,
        });
      } catch {
        // gone meanwhile
      }
    }
    let oursMs = 0;
    const ours = new Set([process.pid]);
    for (let grew = true; grew;) {
      grew = false;
      for (const [pid, st] of stats) {
        if (!ours.has(pid) && ours.has(st.ppid)) {
          ours.add(pid);
          grew = true;
        }
      }
    }
    for (const pid of ours) oursMs += stats.get(pid)?.ms ?? 0;
    // Kernel threads (children of kthreadd, pid 2) mostly write back and route our own traffic.
    for (const [pid, st] of stats) if (pid === 2 || st.ppid === 2) oursMs += st.ms;
    // Interrupt time is left out: on loopback it is mostly our own packets.
    return {
      at: performance.now(),
      busyMs: (user + nice + system) * 10,
      stealMs: steal * 10,
      oursMs,
    };
  } catch {
    return undefined;
  }
}

/** Cores used by other processes, and stolen by the hypervisor, between two samples. */
export function noise(
  a: CpuSample | undefined,
  b: CpuSample | undefined,
): { otherCores: number; stealCores: number } | undefined {
  if (!a || !b || b.at <= a.at) return undefined;
  const wall = b.at - a.at;
  const r = (n: number): number => Math.round(n * 100) / 100;
  return {
    otherCores: r(Math.max(0, b.busyMs - a.busyMs - (b.oursMs - a.oursMs)) / wall),
    stealCores: r((b.stealMs - a.stealMs) / wall),
  };
}

export const fmt = {
  rps: (n: number): string =>
    Number.isFinite(n) ? `${Math.round(n).toLocaleString('en-US')} req/s` : 'n/a',
  ms: (n: number): string =>
    Number.isFinite(n) ? `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms` : 'n/a',
  ratio: (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}×` : 'n/a'),
  mb: (bytes: number | undefined): string =>
    bytes !== undefined && Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(0)} MB` : 'n/a',
  int: (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'),
};
