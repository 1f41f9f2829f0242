import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import { startService, tempDir, type Service } from './support/index.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

function runSmoke(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/smoke.ts', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('exit', (code) => resolve({ code, out }));
  });
}

/** A port nothing listens on: bind one, then close it. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

describe('npm run smoke', () => {
  let sim: Simulator;
  let svc: Service;
  beforeAll(async () => {
    sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
    svc = await startService({ KENTIK_API_URL: sim.url, KENTIK_API_RETRIES: '0' });
  });
  afterAll(async () => {
    await svc.stop();
    await sim.close();
  });

  it('passes with every example query, including the deliberately invalid one', async () => {
    const { code, out } = await runSmoke(['--url', svc.url, '--concurrent']);
    expect(out).toMatch(/^13 passed, 0 failed$/m);
    expect(code).toBe(0);
    for (const step of [
      'posting',
      'got id',
      'requesting',
      'got: 200, image/png',
      'got: 200, image/jpeg',
      'got: 200, image/svg+xml',
      'got: 200, application/pdf',
      'got: 400, application/json',
    ]) {
      expect(out).toContain(step);
    }
  });

  it('honours --glob and runs files one after another by default', async () => {
    const { code, out } = await runSmoke(['--url', svc.url, '--glob', '0[12]-*.json']);
    expect(out).toMatch(/^2 passed, 0 failed$/m);
    expect(code).toBe(0);
  });

  it('fails (non-zero) when the cache is down', async () => {
    const { code, out } = await runSmoke([
      '--url',
      `http://127.0.0.1:${await deadPort()}`,
      '--glob',
      '01-*.json',
    ]);
    expect(out).toContain('ECONNREFUSED');
    expect(out).toMatch(/^0 passed, 1 failed$/m);
    expect(code).toBe(1);
  });

  it('takes expected statuses from the command line for files without expect_status', async () => {
    // Like the original service's tests/data: a bad query with no expect_status in it.
    const dir = tempDir('kic-smoke-data-');
    const bad = JSON.parse(
      readFileSync(path.join(ROOT, 'examples/queries/13-invalid-metric-buckets.json'), 'utf8'),
    ) as Record<string, unknown>;
    delete bad.expect_status;
    writeFileSync(path.join(dir, 'bad_query.json'), JSON.stringify(bad));
    copyFileSync(
      path.join(ROOT, 'examples/queries/01-total-traffic-png.json'),
      path.join(dir, 'good.json'),
    );
    const without = await runSmoke(['--url', svc.url, '--dir', dir]);
    expect(without.out).toMatch(/^1 passed, 1 failed$/m);
    expect(without.code).toBe(1);
    const withExpect = await runSmoke([
      '--url',
      svc.url,
      '--dir',
      dir,
      '--expect',
      'bad_query.json=400',
    ]);
    expect(withExpect.out).toContain('bad_query.json: ok (expected 400)');
    expect(withExpect.out).toMatch(/^2 passed, 0 failed$/m);
    expect(withExpect.code).toBe(0);
    const typo = await runSmoke(['--url', svc.url, '--dir', dir, '--expect', 'bad_qeury.json=400']);
    expect(typo.out).toContain('--expect names files that are not run: bad_qeury.json');
    expect(typo.code).toBe(2);
    const malformed = await runSmoke([
      '--url',
      svc.url,
      '--dir',
      dir,
      '--expect',
      'bad_query.json',
    ]);
    expect(malformed.out).toContain('write it as FILE=STATUS');
    expect(malformed.code).toBe(2);
  });

  it('prints usage with --help', async () => {
    const { code, out } = await runSmoke(['--help']);
    expect(code).toBe(0);
    for (const flag of ['--url', '--dir', '--glob', '--expect', '--concurrent'])
      expect(out).toContain(flag);
  });
});
