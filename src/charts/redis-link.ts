import { CoordinatorUnavailableError } from '../coordination/coordinator.ts';
import { RedisUnavailable, type RedisLink } from '../coordination/redis/client.ts';
import type { ChartRedis } from './redis-store.ts';

/** Redis being unreachable is a 503 with Retry-After, as for every other request that needs it. */
export function chartRedis(link: Pick<RedisLink, 'command' | 'evalScript'>): ChartRedis {
  const translate = (err: unknown): never => {
    if (err instanceof RedisUnavailable)
      throw new CoordinatorUnavailableError(err.message, { cause: err });
    throw err;
  };
  return {
    command: (args) => link.command(args).catch(translate),
    evalScript: (script, keys, args) => link.evalScript(script, keys, args).catch(translate),
  };
}
