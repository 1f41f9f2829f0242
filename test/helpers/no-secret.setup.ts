/**
 * Runs in every test file (vitest `setupFiles`): the secrets of every service a test starts (its
 * Kentik token, the password in its REDIS_URL) must appear in no line the service printed and in
 * no answer it gave to `fetch`, whatever the test itself checks. Answers are read from a clone, so
 * the test's own reading is untouched. A redis password is also checked against every answer of
 * every service of the file: a replica must not leak another's configuration either.
 */
import { afterAll } from 'vitest';
import { removeTempDirs, startedServices } from '../support/service.ts';

const leaks: string[] = [];
const reads = new Set<Promise<void>>();
const realFetch = globalThis.fetch;

/** Which secret a text contains, by kind (never the secret itself: this message is printed). */
function secretIn(text: Buffer | string, secrets: readonly string[]): string | undefined {
  for (const s of secrets) if (text.includes(s)) return s;
  return undefined;
}

function allSecrets(): string[] {
  return [...new Set(startedServices().flatMap((s) => s.secrets))];
}

globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const res = await realFetch(input, init);
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const svc = startedServices().find((s) => s.url !== '' && url.startsWith(s.url));
  if (!svc) return res;
  const secrets = allSecrets();
  if (secrets.length === 0) return res;
  for (const [name, value] of res.headers) {
    if (secretIn(value, secrets)) leaks.push(`header ${name} of ${url}`);
  }
  const read = res
    .clone()
    .arrayBuffer()
    .then(
      (body) => {
        if (secretIn(Buffer.from(body), secrets))
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
    for (const secret of svc.secrets) {
      const lines = svc.output.filter((l) => l.includes(secret));
      if (lines.length > 0)
        where.push(
          `${lines.length} output line(s) of the service on ${svc.url || svc.cachePath || svc.pid}, e.g. ${lines[0]!.replaceAll(secret, '<SECRET>').slice(0, 300)}`,
        );
    }
  }
  await removeTempDirs();
  if (where.length > 0) throw new Error(`a secret leaked into: \n  ${where.join('\n  ')}`);
});
