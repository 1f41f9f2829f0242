/**
 * Kept for imports written before test/support/ existed: everything lives in test/support/.
 * New code imports from '../support/index.ts' (or the module it needs).
 */
export * from '../support/index.ts';
