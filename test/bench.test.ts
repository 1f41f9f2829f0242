/**
 * The benchmark harness works end to end: `bench/run.ts --quick` runs every scenario and writes its
 * results. The numbers are not checked — benchmarks are not timed tests, and CI machines differ.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { removeDir, tempDir } from './support/index.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

function runBench(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // tsx from node_modules directly: `npx` would add its own start-up and could prompt.
    const proc = spawn(
      process.execPath,
      [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(ROOT, 'bench/run.ts'), ...args],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      proc.kill('SIGINT');
      reject(new Error(`bench did not finish within ${timeoutMs} ms:\n${stderr.slice(-3000)}`));
    }, timeoutMs);
    proc.on('error', reject);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('npm run bench', () => {
  const out = tempDir('kic-bench-test-');
  afterAll(() => removeDir(out));

  it('--help describes the options', async () => {
    const r = await runBench(['--help'], 30_000);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--quick');
    expect(r.stdout).toContain('bench/results/latest.json');
  });

  // From source, so the test does not spend half a minute in tsc; the harness is the same.
  it('--quick runs every scenario and writes the results', { timeout: 240_000 }, async () => {
    const file = path.join(out, 'latest.json');
    const r = await runBench(['--quick', '--from-source', '--out', file], 230_000);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.stdout).toContain('| scenario | figure | value | target | result |');
    expect(existsSync(file)).toBe(true);

    const result = JSON.parse(readFileSync(file, 'utf8'));
    expect(result.mode).toBe('quick');
    expect(result.errors).toEqual([]);
    expect(['wrk', 'autocannon']).toContain(result.loadGenerator.name);
    const scenarios = new Set(
      (result.rows as Array<{ scenario: string }>).map((row) => row.scenario),
    );
    for (const s of [
      '1 Hot GET',
      '2 Repeat POST',
      '2b Repeat POST, same ttl',
      '3 Fan-in',
      '4 Added latency',
      '5 Cold start',
      '6 Maintenance under load',
      '7 Unique POSTs',
      '8 Cluster fan-in',
      '9 Cluster hot GET',
      '10 Redis memory per image',
    ]) {
      expect(scenarios, `scenario ${s} missing from ${[...scenarios].join(', ')}`).toContain(s);
    }
    for (const key of [
      'hotGet',
      'repeatPost',
      'repeatPostSameTtl',
      'fanIn',
      'addedLatency',
      'coldStart',
      'maintenance',
      'uniquePosts',
      'clusterFanIn',
      'clusterHotGet',
      'redisMemory',
    ]) {
      expect(result.scenarios, `raw results of ${key}`).toHaveProperty(key);
    }
    // The fan-in's reference ran: bare node:http answering as many held GETs.
    expect(result.scenarios.fanIn.bareNodeAfterReleaseMs.max).toBeGreaterThan(0);
    for (const row of result.rows)
      expect(['pass', 'FAIL', 'info', 'skipped']).toContain(row.status);
    // Every target the chart draws has its number beside the text, and the chart is an SVG.
    const measured = (result.rows as Array<{ measure?: { value: number; target: number } }>).filter(
      (row) => row.measure,
    );
    expect(measured.length).toBeGreaterThanOrEqual(8);
    for (const { measure } of measured) {
      expect(Number.isFinite(measure!.value)).toBe(true);
      expect(measure!.target).toBeGreaterThan(0);
    }
    const svg = readFileSync(path.join(out, 'latest.svg'), 'utf8');
    expect(svg).toMatch(/^<\?xml[^>]*\?><svg /);
    // Skia writes shaped text: "figure" comes out with an fi ligature.
    expect(svg).toContain('as a multiple of its target');
  });
});
