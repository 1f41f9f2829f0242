/**
 * Runs in every test file (vitest `setupFiles`): the Kentik token of every service a test starts
 * must appear in no line the service printed and in no answer it gave to `fetch`, whatever the
 * test itself checks. Answers are read from a clone, so the test's own reading is untouched.
 */
import { afterAll } from 'vitest';
import { removeTempDirs, startedServices } from './service.ts';

const leaks: string[] = [];
const reads = new Set<Promise<void>>();
const realFetch = globalThis.fetch;

globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const res = await realFetch(input, init);
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const svc = startedServices().find(
    (s) => s.url !== '' && s.token !== '' && url.startsWith(s.url),
  );
  if (!svc) return res;
  for (const [name, value] of res.headers) {
    if (value.includes(svc.token)) leaks.push(`header ${name} of ${url}`);
  }
  const read = res
    .clone()
    .arrayBuffer()
    .then(
      (body) => {
        if (Buffer.from(body).includes(svc.token))
          leaks.push(`body of ${init?.method ?? 'GET'} ${url.slice(0, 200)}`);
      },
      () => {}, // aborted or reset: nothing was answered
    )
    .finally(() => reads.delete(read));
  reads.add(read);
  return res;
};

afterAll(async () => {
  await Promise.all([...reads]);
  globalThis.fetch = realFetch;
  const where = [...leaks];
  for (const svc of startedServices()) {
    if (svc.token === '') continue;
    const lines = svc.output.filter((l) => l.includes(svc.token));
    if (lines.length > 0)
      where.push(
        `${lines.length} output line(s) of the service on ${svc.url || svc.cachePath}, e.g. ${lines[0]!.slice(0, 300)}`,
      );
  }
  await removeTempDirs();
  if (where.length > 0) throw new Error(`the Kentik token leaked into: \n  ${where.join('\n  ')}`);
});
