/**
 * The one way tests and benchmarks start processes: the service, the Kentik simulator (in a child
 * process, for benchmarks), redis-server, and the benchmarks' references (nginx, bare node:http,
 * the bare pass-through cache).
 */
export * from './bare-image.ts';
export * from './build.ts';
export * from './clock.ts';
export * from './http.ts';
export * from './proc-stats.ts';
export * from './process.ts';
export * from './redis.ts';
export * from './references.ts';
export * from './service.ts';
export * from './simulator.ts';
export * from './tmp.ts';
