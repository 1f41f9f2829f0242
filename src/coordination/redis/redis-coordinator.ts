import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../../config.ts';
import type { Metrics } from '../../metrics.ts';
import { LocalCoordinator } from '../local.ts';

/** Placeholder until the Redis implementation lands (next commit). */
export class RedisCoordinator extends LocalCoordinator {
  constructor(_deps: { config: Config; log: FastifyBaseLogger; metrics: Metrics }) {
    throw new Error('CACHE_BACKEND=redis is not implemented yet');
    super(undefined as never);
  }
}
