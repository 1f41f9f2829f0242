// The repository's example queries (used by the demo and the smoke runner) are valid Kentik
// queries, as the simulator checks them.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateRequest } from 'kentik-simulator';
import { describe, expect, it } from 'vitest';

describe('examples/queries', () => {
  const dir = join(import.meta.dirname, '..', 'examples', 'queries');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

  it('has a dozen examples covering every image type', () => {
    expect(files.length).toBeGreaterThanOrEqual(12);
    const types = new Set(
      files.map(
        (f) =>
          (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { api_query: { imageType: string } })
            .api_query.imageType,
      ),
    );
    expect([...types].sort()).toEqual(['jpeg', 'jpg', 'pdf', 'png', 'svg']);
  });

  for (const f of files) {
    it(`${f}: valid unless it expects an error`, () => {
      const spec = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
        api_query: unknown;
        ttl: unknown;
        expect_status?: number;
      };
      expect(typeof spec.ttl).toBe('number');
      const r = validateRequest(spec.api_query);
      if (spec.expect_status === undefined) expect(r.ok ? 'valid' : r.message).toBe('valid');
      else {
        expect(spec.expect_status).toBe(400);
        expect(r.ok).toBe(false);
      }
    });
  }
});
