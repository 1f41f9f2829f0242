/**
 * A cluster as the README runs it, from real processes: one redis-server, the Kentik simulator
 * (in its own process, behind the timestamping proxy that logs every chart call) and N replicas of
 * the service in Redis mode, each started from the compiled build (starts in ~1 s).
 */
import { createHash } from 'node:crypto';
import { buildService } from '../support/build.ts';
import {
  metric,
  startRedis,
  startService,
  startSimulatorProcess,
  TEST_TOKEN,
  type RedisOptions,
  type RedisServer,
  type Service,
  type SimControl,
} from '../support/index.ts';

/** Given to redis-server as `requirepass`: it must never reach a log line or an answer. */
export const REDIS_PASSWORD = 'redis-pw-DO-NOT-LEAK-4f9c1e';

export interface Cluster {
  redis: RedisServer;
  sim: SimControl;
  replicas: Service[];
  /** The environment every replica got (before per-replica additions). */
  env: Record<string, string>;
  /** Starts one more replica on the same Redis (env added to the cluster's). */
  startReplica(env?: Record<string, string>): Promise<Service>;
  /** Replaces replicas[i] (after a kill) with a fresh process. */
  replace(i: number, env?: Record<string, string>): Promise<Service>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  replicas?: number;
  env?: Record<string, string>;
  redis?: RedisOptions;
  /** An existing Redis/simulator to share (several clusters of one test file). */
  shared?: { redis: RedisServer; sim: SimControl };
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const owned = !opts.shared;
  const [redis, sim, entry] = await Promise.all([
    opts.shared?.redis ?? startRedis({ password: REDIS_PASSWORD, ...opts.redis }),
    opts.shared?.sim ?? startSimulatorProcess({ email: 'test@example.com', token: TEST_TOKEN }),
    buildService(),
  ]);
  const env: Record<string, string> = {
    CACHE_BACKEND: 'redis',
    REDIS_URL: redis.url,
    FLIGHT_LEASE: '2',
    KENTIK_API_URL: sim.url,
    KT_AUTH_EMAIL: sim.email,
    KT_AUTH_TOKEN: sim.token,
    KENTIK_API_RETRIES: '0',
    ENTRY_WAIT_TIMEOUT: '30',
    LOG_LEVEL: 'debug',
    ...opts.env,
  };
  const all: Service[] = [];
  const startReplica = async (extra: Record<string, string> = {}): Promise<Service> => {
    const svc = await startService({ ...env, ...extra }, { entry });
    all.push(svc);
    return svc;
  };
  const replicas = await Promise.all(
    Array.from({ length: opts.replicas ?? 3 }, () => startReplica()),
  );
  return {
    redis,
    sim,
    replicas,
    env,
    startReplica,
    replace: async (i, extra) => {
      await replicas[i]!.stop('SIGKILL');
      replicas[i] = await startReplica(extra);
      return replicas[i]!;
    },
    stop: async () => {
      await Promise.all(all.map((s) => s.stop()));
      if (owned) await Promise.all([redis.stop(), sim.stop()]);
    },
  };
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Chart calls the simulator received for a query hash. */
export async function upstreamCalls(sim: SimControl, hash: string): Promise<number> {
  return (await sim.stats()).byHash[hash]?.calls ?? 0;
}

/** The image digests the simulator answered for a query hash, in order. */
export async function upstreamDigests(sim: SimControl, hash: string): Promise<string[]> {
  return (await sim.stats()).byHash[hash]?.digests ?? [];
}

/** Sum of a metric over several replicas. */
export async function sumMetric(
  replicas: Service[],
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const values = await Promise.all(replicas.map((r) => metric(r.url, name, labels)));
  return values.reduce((a, b) => a + b, 0);
}
