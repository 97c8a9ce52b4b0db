/**
 * Per-route rate limits of the `/v1` API: a fixed one-minute window per (route, caller). In memory on purpose: a
 * limit protects this process's resources, and losing the counters on restart only resets a window.
 */
import { VmmError } from './errors.js';

export interface RateLimits {
  /** Requests per minute per caller, by route group. */
  [group: string]: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = {
  default: 600,
  'vm-create': 30,
  exec: 600,
  files: 120,
  login: 10,
  keys: 60,
};

export class RateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limits: RateLimits = DEFAULT_RATE_LIMITS,
    private readonly windowMs = 60_000,
  ) {}

  /** Counts one request; throws 429 naming the limit when the caller is over it. */
  hit(group: string, caller: string, now = Date.now()): void {
    const limit = this.limits[group] ?? this.limits.default ?? DEFAULT_RATE_LIMITS.default!;
    const key = `${group}\0${caller}`;
    let window = this.windows.get(key);
    if (!window || now - window.start >= this.windowMs) {
      window = { start: now, count: 0 };
      this.windows.set(key, window);
      if (this.windows.size > 10_000) this.prune(now);
    }
    window.count++;
    if (window.count > limit) {
      const retryAfter = Math.ceil((window.start + this.windowMs - now) / 1000);
      const error = new VmmError(
        429,
        'rate_limited',
        `rate limit of ${limit} requests per minute for "${group}" exceeded; retry in ${retryAfter} s`,
      );
      (error as VmmError & { retryAfter?: number }).retryAfter = retryAfter;
      throw error;
    }
  }

  private prune(now: number) {
    for (const [key, window] of this.windows) if (now - window.start >= this.windowMs) this.windows.delete(key);
  }
}
