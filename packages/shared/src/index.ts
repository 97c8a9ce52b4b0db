export * from './annotations.js';
export * from './auth.js';
export * from './hooks.js';
export * from './playground.js';
export * from './runs.js';
export * from './task-standard.js';
export * from './trace.js';
