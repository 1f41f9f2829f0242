/**
 * Summarises a V8 CPU profile (node --cpu-prof, or `npm run bench -- --profile`): where the time
 * went, by function (self time), by package/file, and inclusive time of the service's own functions.
 *
 *   npx tsx bench/profile-summary.ts bench/results/profiles/CPU.….cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface Summary {
  totalMs: number;
  idleMs: number;
  bySelf: Array<{ name: string; ms: number; pct: number }>;
  byPackage: Array<{ name: string; ms: number; pct: number }>;
  inclusive: Array<{ name: string; ms: number; pct: number }>;
}

function where(url: string): string {
  if (!url) return '(native)';
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const m = /\/(dist|src)\/(.*)$/.exec(url);
  return m ? `${m[1]}/${m[2]}` : url.replace(/^file:\/\//, '');
}

export function summarise(profile: Profile, top = 25): Summary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfMs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++)
    selfMs.set(samples[i]!, (selfMs.get(samples[i]!) ?? 0) + (deltas[i] ?? 0) / 1000);
  const totalMs = (profile.endTime - profile.startTime) / 1000;

  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const fn = (n: Node): string => {
    const name = n.callFrame.functionName || '(anonymous)';
    return n.callFrame.url
      ? `${name} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`
      : name;
  };
  const self = new Map<string, number>();
  const pkg = new Map<string, number>();
  const incl = new Map<string, number>();
  let idleMs = 0;
  for (const [id, ms] of selfMs) {
    const n = byId.get(id);
    if (!n) continue;
    if (n.callFrame.functionName === '(idle)') idleMs += ms;
    self.set(fn(n), (self.get(fn(n)) ?? 0) + ms);
    const p = n.callFrame.url
      ? where(n.callFrame.url)
      : n.callFrame.functionName.startsWith('(')
        ? n.callFrame.functionName
        : '(native)';
    pkg.set(p, (pkg.get(p) ?? 0) + ms);
    // Inclusive time of the service's own functions: every distinct own frame on the stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const c = byId.get(cur);
      if (!c || !/\/(dist|src)\//.test(c.callFrame.url) || c.callFrame.url.includes('node_modules'))
        continue;
      const k = fn(c);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + ms);
    }
  }
  const busy = Math.max(1, totalMs - idleMs);
  const list = (m: Map<string, number>): Summary['bySelf'] =>
    [...m.entries()]
      .filter(([k]) => k !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({
        name,
        ms: Math.round(ms),
        pct: Math.round((ms / busy) * 1000) / 10,
      }));
  return {
    totalMs: Math.round(totalMs),
    idleMs: Math.round(idleMs),
    bySelf: list(self),
    byPackage: list(pkg),
    inclusive: list(incl),
  };
}

if (import.meta.filename === process.argv[1]) {
  const { values, positionals } = parseArgs({
    options: { top: { type: 'string', default: '25' } },
    allowPositionals: true,
  });
  if (positionals.length === 0) {
    console.error('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [--top N]');
    process.exit(2);
  }
  for (const file of positionals) {
    const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(values.top));
    console.log(
      `\n# ${file}\nwall ${s.totalMs} ms, idle ${s.idleMs} ms; percentages are of busy time\n`,
    );
    for (const [title, rows] of [
      ['self time by function', s.bySelf],
      ['self time by package / file', s.byPackage],
      ['inclusive time of the service’s own functions', s.inclusive],
    ] as const) {
      console.log(`## ${title}`);
      for (const r of rows)
        console.log(`${String(r.ms).padStart(8)} ms ${String(r.pct).padStart(5)} %  ${r.name}`);
      console.log();
    }
  }
}
