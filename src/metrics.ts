import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per app instance, so in-process tests and several apps never share counters. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kic_process_' });
  const r = [registry];
  return {
    registry,
    httpRequests: new Counter({
      name: 'kic_http_requests_total',
      help: 'HTTP requests answered, by route, method and status code',
      labelNames: ['route', 'method', 'status'] as const,
      registers: r,
    }),
    httpDuration: new Histogram({
      name: 'kic_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (GETs that wait for a fetch included)',
      labelNames: ['route'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60],
      registers: r,
    }),
    requests: new Counter({
      name: 'kic_cache_requests_total',
      help: 'POST /requests by how they were satisfied: hit (rule 1), shared (rule 2), miss (new fetch)',
      labelNames: ['result'] as const,
      registers: r,
    }),
    imageLookups: new Counter({
      name: 'kic_image_lookups_total',
      help: 'GET /image lookups by result: image, error, pending, not_found',
      labelNames: ['result'] as const,
      registers: r,
    }),
    upstreamCalls: new Counter({
      name: 'kic_upstream_attempts_total',
      help: 'HTTP attempts to Kentik by outcome (ok, http_<status>, timeout, network, bad_response)',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    upstreamFetches: new Counter({
      name: 'kic_upstream_fetches_total',
      help: 'Fetches (all attempts of one query) by final outcome',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    upstreamDuration: new Histogram({
      name: 'kic_upstream_attempt_duration_seconds',
      help: 'Duration of one HTTP attempt to Kentik',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: r,
    }),
    upstreamQueued: new Gauge({
      name: 'kic_upstream_queued',
      help: 'Fetches waiting for a free upstream slot (KENTIK_API_CONCURRENCY)',
      registers: r,
    }),
    entries: new Gauge({
      name: 'kic_cache_entries',
      help: 'Live entries by kind',
      labelNames: ['kind'] as const,
      registers: r,
    }),
    bytes: new Gauge({
      name: 'kic_cache_bytes',
      help: 'Bytes of image data stored (each shared image counted once)',
      registers: r,
    }),
    memoryBytes: new Gauge({
      name: 'kic_memory_cache_bytes',
      help: 'Bytes of image data held in memory for hot GETs',
      registers: r,
    }),
    memoryHits: new Counter({
      name: 'kic_memory_hits_total',
      help: "GET /image answered from this replica's memory, without touching the shared index",
      registers: r,
    }),
    flightTakeovers: new Counter({
      name: 'kic_flight_takeovers_total',
      help: 'Fetches taken over because their lease ran out (a replica died or a restart resumed them)',
      registers: r,
    }),
    settles: new Counter({
      name: 'kic_settle_total',
      help: 'Fetch results offered to the index: accepted, or rejected because the lease was lost',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    redisReconnects: new Counter({
      name: 'kic_redis_reconnects_total',
      help: 'Times the connection to Redis was lost and made again',
      registers: r,
    }),
    waiters: new Gauge({
      name: 'kic_waiters',
      help: 'GET requests currently waiting for a pending entry',
      registers: r,
    }),
    evictions: new Counter({
      name: 'kic_cache_evictions_total',
      help: 'Images evicted because CACHE_MAX_BYTES was exceeded',
      registers: r,
    }),
    expired: new Counter({
      name: 'kic_cache_expired_total',
      help: 'Entries removed because they expired',
      registers: r,
    }),
    storeErrors: new Counter({
      name: 'kic_store_write_errors_total',
      help: 'Failed writes to the store, by error code (ENOSPC, EACCES…)',
      labelNames: ['code'] as const,
      registers: r,
    }),
    maintenanceDuration: new Histogram({
      name: 'kic_maintenance_duration_seconds',
      help: 'Duration of one maintenance pass',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: r,
    }),
    quarantined: new Counter({
      name: 'kic_quarantined_files_total',
      help: 'Unreadable cache files moved aside',
      registers: r,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
