/**
 * 8. Cluster fan-in: scenario 3 over three replicas on one Redis. Client i POSTs to replica
 * i mod 3 and waits on replica i+1 mod 3: one upstream call for the whole cluster, and the last
 * client served at most 100 ms after the upstream answer.
 */
import { redisForBench, redisReplicas } from '../lib/cluster.ts';
import type { Ctx } from '../lib/context.ts';
import { fanInOver } from './fan-in.ts';

export async function clusterFanIn(ctx: Ctx): Promise<void> {
  const redis = await redisForBench(ctx);
  const svcs = await redisReplicas(ctx, redis, ctx.params.clusterReplicas, 'kic-fanin:');
  try {
    await fanInOver(ctx, svcs, {
      scenario: '8 Cluster fan-in',
      rawKey: 'clusterFanIn',
      budgetMs: ctx.params.clusterFanInBudgetMs,
    });
  } finally {
    await Promise.all(svcs.map((s) => s.stop()));
    await redis.stop();
  }
}
