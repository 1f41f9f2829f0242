/** Kept for imports written before test/support/ existed: see test/support/build.ts. */
export * from '../support/build.ts';
