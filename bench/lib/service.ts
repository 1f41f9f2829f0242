/**
 * The service as the benchmarks run it: the production build (or src/ via tsx), NODE_ENV
 * production, LOG_LEVEL warn unless a scenario asks for more, talking to the simulator process.
 * Started by the shared support module, like every process the tests start.
 */
import {
  DIST_ENTRY,
  startService,
  type Service,
  type SimControl,
} from '../../test/support/index.ts';

export type ServiceProc = Service;

export interface ServiceOptions {
  sim: SimControl;
  /** Omit with CACHE_BACKEND=redis in env. */
  cachePath?: string;
  fromSource: boolean;
  env?: Record<string, string>;
  /** Directory for a V8 CPU profile written at exit (node --cpu-prof). */
  profileDir?: string;
  /** Resolve once it answers /healthz (default) or right after spawning (cold start measures readiness itself). */
  wait?: boolean;
}

export function startBenchService(opts: ServiceOptions): Promise<ServiceProc> {
  return startService(
    {
      NODE_ENV: 'production',
      KENTIK_API_URL: opts.sim.url,
      KT_AUTH_EMAIL: opts.sim.email,
      KT_AUTH_TOKEN: opts.sim.token,
      LOG_LEVEL: 'warn',
      // Benchmarks measure throughput, not admission control: no per-client limit or queue cap
      // (settings of the admission control, where it exists).
      RATE_LIMIT_MAX: '0',
      MAX_PENDING: '1000000',
      MAX_CONNECTIONS: '100000',
      MAX_CONNECTIONS_PER_ADDRESS: '0',
      ...opts.env,
    },
    {
      cachePath: opts.cachePath,
      entry: opts.fromSource ? undefined : DIST_ENTRY,
      nodeArgs: opts.profileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.profileDir] : [],
      wait: opts.wait === false ? 'none' : 'healthz',
      keepLines: 200,
    },
  );
}
