/**
 * 10. Redis memory per image: what one cached chart costs in Redis (README capacity figures).
 * A Redis-mode replica fetches N new charts of the PNG examples (real simulator renders, typical
 * sizes), then N more ids of the same queries (rule 2: new ids, same bytes). Redis's INFO memory
 * (`used_memory`) before and after each step gives bytes per image and per extra id. What Redis
 * allocates once (client buffers, scripts) is spread over N: use the full run's N = 200.
 */
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ROOT } from '../../test/support/index.ts';
import { redisForBench, redisReplicas } from '../lib/cluster.ts';
import { withTitle, type Ctx } from '../lib/context.ts';
import { postRequest, request } from '../lib/http.ts';
import { fmt } from '../lib/report.ts';
import { round } from '../lib/util.ts';

export async function redisMemory(ctx: Ctx): Promise<void> {
  const { rows } = ctx;
  const S = '10 Redis memory per image';
  const n = ctx.params.redisMemoryImages;
  const dir = path.join(ROOT, 'examples/queries');
  const examples = readdirSync(dir)
    .filter((f) => f.endsWith('-png.json'))
    .map(
      (f) =>
        (JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as { api_query: Record<string, any> })
          .api_query,
    );
  const redis = await redisForBench(ctx);
  // The whole run inside REUSE_WINDOW, so that the second round's ids share the first round's bytes.
  const [svc] = await redisReplicas(ctx, redis, 1, 'kic-mem:', { REUSE_WINDOW: '3600' });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const used = async (): Promise<number> => Number((await redis.info('memory')).used_memory);
  try {
    const queries = Array.from({ length: n }, (_, i) =>
      withTitle(examples[i % examples.length]!, `bench memory ${ctx.nonce} ${i}`),
    );
    const fetchAll = async (ttl: number): Promise<number> => {
      let bytes = 0;
      // 8 at a time: the simulator renders each chart on this machine.
      for (let i = 0; i < queries.length; i += 8) {
        const batch = queries.slice(i, i + 8);
        const sizes = await Promise.all(
          batch.map(async (q) => {
            const id = await postRequest(svc!.url, JSON.stringify({ api_query: q, ttl }), agent);
            const r = await request(`${svc!.url}/image/${id}`, { agent, timeoutMs: 120_000 });
            if (r.status !== 200) throw new Error(`GET /image answered ${r.status}`);
            return r.body.length;
          }),
        );
        bytes += sizes.reduce((a, b) => a + b, 0);
      }
      return bytes;
    };
    const m0 = await used();
    const imageBytes = await fetchAll(3600);
    const m1 = await used();
    await fetchAll(7200); // a longer ttl: a new id per query (rule 2), sharing the bytes stored above
    const m2 = await used();
    const perImage = (m1 - m0) / n;
    const perId = (m2 - m1) / n;
    const avgImage = imageBytes / n;
    const perGiB = 2 ** 30 / perImage;
    ctx.raw.redisMemory = {
      images: n,
      averageImageBytes: round(avgImage),
      usedMemoryBefore: m0,
      usedMemoryAfterImages: m1,
      usedMemoryAfterExtraIds: m2,
      bytesPerImage: round(perImage),
      overheadPerImage: round(perImage - avgImage),
      bytesPerExtraId: round(perId),
      imagesPerGiB: Math.floor(perGiB),
    };
    rows.info(
      S,
      `Redis used_memory per image (${n} PNG charts, average ${fmt.int(avgImage)} bytes)`,
      `${fmt.int(perImage)} bytes`,
      `overhead ${fmt.int(perImage - avgImage)} bytes over the image itself`,
    );
    rows.info(S, 'images per GiB of Redis memory', fmt.int(perGiB));
    rows.info(S, 'each further id of an image already stored', `${fmt.int(perId)} bytes`);
  } finally {
    agent.destroy();
    await svc!.stop();
    await redis.stop();
  }
}
