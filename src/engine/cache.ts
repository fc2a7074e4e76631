/**
 * Verdict cache: the same content is scanned once. Keyed by SHA-256 of the whole object and the
 * database (its version and a digest of every file loaded), so a signature update invalidates every
 * entry without a sweep (ClamAV keys its clean-file cache by hash as well, and drops it on reload).
 * Errors are never cached.
 */
import type { Verdict } from './types.js';

export interface VerdictCache {
  get(dbVersion: string, sha256: string): Promise<Verdict | undefined>;
  set(dbVersion: string, sha256: string, verdict: Verdict): Promise<void>;
  clear(): Promise<void>;
  stats(): { hits: number; misses: number; size: number };
}

/** In-process LRU on Map insertion order: a hit re-inserts the key so eviction takes the oldest. */
export class MemoryVerdictCache implements VerdictCache {
  private readonly map = new Map<string, Verdict>();
  private hits = 0;
  private misses = 0;

  constructor(private readonly capacity: number) {}

  async get(dbVersion: string, sha256: string): Promise<Verdict | undefined> {
    const key = `${dbVersion}\0${sha256}`;
    const v = this.map.get(key);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key);
    this.map.set(key, v);
    return v;
  }

  async set(dbVersion: string, sha256: string, verdict: Verdict): Promise<void> {
    if (this.capacity <= 0 || verdict.status === 'error') return;
    const key = `${dbVersion}\0${sha256}`;
    this.map.delete(key);
    this.map.set(key, verdict);
    while (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
    }
  }

  async clear(): Promise<void> {
    this.map.clear();
  }

  stats() {
    return { hits: this.hits, misses: this.misses, size: this.map.size };
  }
}
