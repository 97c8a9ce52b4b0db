export { VmManager, type VmmLimits, type VmmOptions } from './manager.js';
export { DEFAULT_RATE_LIMITS, RateLimiter, type RateLimits } from './rate-limit.js';
export { type HostNetworkJanitor, type ReconcileReport, Reconciler } from './reconciler.js';
