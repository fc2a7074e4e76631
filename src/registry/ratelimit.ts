/**
 * Per-client token buckets (one per bucket name and client address), in memory: `perMinute`
 * requests sustained with bursts up to `burst`. The table is bounded: full buckets carry no
 * information, so a sweep drops them, and at the cap the oldest entries go first.
 */
export interface RateLimit {
  perMinute: number;
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const MAX_ENTRIES = 100_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  constructor(
    private readonly limits: Readonly<Record<string, RateLimit>>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token; returns 0 when allowed, else the seconds to wait (for Retry-After). */
  take(bucket: string, client: string): number {
    const limit = this.limits[bucket];
    if (!limit || limit.perMinute <= 0) return 0;
    const key = `${bucket}\u0000${client}`;
    const now = this.now();
    const rate = limit.perMinute / 60_000;
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(limit.burst, b.tokens + (now - b.at) * rate);
      b.at = now;
      this.buckets.delete(key); // re-insert: Map order doubles as least-recently-used order
    } else {
      b = { tokens: limit.burst, at: now };
      if (this.buckets.size >= MAX_ENTRIES) this.sweep(limit.burst);
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / rate / 1000));
  }

  private sweep(burst: number): void {
    const now = this.now();
    for (const [k, b] of this.buckets)
      if (b.tokens >= burst || now - b.at > 3_600_000) this.buckets.delete(k);
    // Still full (a flood of distinct clients): drop the least recently used tenth.
    if (this.buckets.size >= MAX_ENTRIES) {
      let n = Math.ceil(MAX_ENTRIES / 10);
      for (const k of this.buckets.keys()) {
        if (n-- <= 0) break;
        this.buckets.delete(k);
      }
    }
  }
}
