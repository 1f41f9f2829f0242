// The rough edges a new user hit (issue 12), each pinned by a test.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from 'kentik-simulator';
import {
  getImage,
  getJson,
  kentikQuery,
  postJson,
  requestImage,
  startService,
  tempDir,
  type Service,
} from './helpers/service.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

let sim: Simulator;
let svc: Service;
beforeAll(async () => {
  sim = await startSimulator({ email: 'test@example.com', token: 'test-token-DO-NOT-LEAK' });
  svc = await startService({ KENTIK_API_URL: sim.url, DEFAULT_TTL: '600' });
});
afterAll(async () => {
  await svc.stop();
  await sim.close();
});

describe('clear answers to common mistakes', () => {
  it('/info?limit=abc says what limit must be, not validator text', async () => {
    const res = await fetch(`${svc.url}/info?limit=abc`);
    const body = (await res.json()) as any;
    expect(res.status).toBe(400);
    expect(body.loc).toEqual(['querystring', 'limit']);
    expect(body.msg).toBe(
      'limit must be a whole number of entries from 0 to 100000, written in digits (e.g. ?limit=50).',
    );
  });

  it('an id with uppercase hex is told that ids are lowercase', async () => {
    const id = await requestImage(svc.url, kentikQuery('upper'));
    const r = await getImage(svc.url, id.toUpperCase());
    expect(r.status).toBe(404);
    expect(r.json.msg).toContain('has uppercase hex digits, but ids are lowercase');
    expect(r.json.msg).not.toContain('expected <64 hex digits>');
    // The real id works.
    expect((await getImage(svc.url, id)).status).toBe(200);
  });

  it.each(['GET', 'PUT', 'DELETE', 'PATCH'])(
    '%s /requests is a 405 with Allow: POST',
    async (method) => {
      const res = await fetch(`${svc.url}/requests`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
      const body = (await res.json()) as any;
      expect(body.type).toBe('Method not allowed');
      expect(body.msg).toContain('POST a JSON body');
    },
  );

  it('an unknown key in the body is a 400 that names it (and suggests the right one)', async () => {
    const typo = await postJson(`${svc.url}/requests`, { api_query: kentikQuery('typo'), ttL: 5 });
    expect(typo.status).toBe(400);
    expect(typo.json.loc).toEqual(['body', 'ttL']);
    expect(typo.json.msg).toBe(
      'Unknown key "ttL" in the body (did you mean "ttl"? keys are case-sensitive): only api_query and ttl are accepted.',
    );
    const other = await postJson(`${svc.url}/requests`, {
      api_query: kentikQuery('typo'),
      colour: 'red',
    });
    expect(other.status).toBe(400);
    expect(other.json.msg).toContain('Unknown key "colour"');
  });

  it('valid JSON with a __proto__ key is not called invalid JSON', async () => {
    const r = await postJson(
      `${svc.url}/requests`,
      '{"api_query": {"queries": [], "__proto__": {"x": 1}}, "ttl": 60}',
    );
    expect(r.status).toBe(400);
    expect(r.json.type).toBe('Validation error');
    expect(r.json.msg).toContain('is valid JSON but contains a "__proto__" key');
    expect(r.json.msg).not.toContain('not valid JSON');
  });

  it("Swagger's example ttl is DEFAULT_TTL, so a tried-out id still works a minute later", async () => {
    const doc = await getJson(`${svc.url}/openapi.json`);
    const body =
      doc.paths['/requests'].post.requestBody.content['application/json'].schema.properties;
    expect(body.ttl.examples).toEqual([600]);
  });
});

describe('startup', () => {
  it('LOG_LEVEL=loud stops startup like any other bad setting', async () => {
    const bad = await startService({ LOG_LEVEL: 'loud' }, { expectFail: true });
    expect(await bad.exited).toBe(2);
    expect(bad.output.join('\n')).toContain(
      'LOG_LEVEL="loud" must be one of fatal, error, warn, info, debug, trace, silent',
    );
  });

  it('npm start before npm run build says to build first', async () => {
    // A copy of the start script in a tree without dist/.
    const tree = tempDir('kic-nobuild-');
    mkdirSync(path.join(tree, 'scripts'));
    copyFileSync(path.join(ROOT, 'scripts/start.mjs'), path.join(tree, 'scripts/start.mjs'));
    expect(existsSync(path.join(tree, 'dist'))).toBe(false);
    const { code, out } = await run(process.execPath, [path.join(tree, 'scripts/start.mjs')]);
    expect(code).toBe(1);
    expect(out).toContain('run `npm run build` first');
    expect(out).not.toContain('MODULE_NOT_FOUND');
  });
});

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('exit', (code) => resolve({ code, out }));
  });
}
