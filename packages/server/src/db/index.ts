export * from './client.js';
export { analyzeStaleTables, type PgliteAnalyzer, startPgliteAnalyzer } from './pglite-analyze.js';
export * from './schema.js';
