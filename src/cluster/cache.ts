/**
 * The verdict cache shared by all workers: each worker keeps a full LRU and tells the others every
 * verdict it reaches (through the primary), so a lookup never leaves the process — the cost is one
 * small IPC message per new object, not a round trip per lookup (bench/workers.ts measures it).
 * Verdicts are tagged with the reload epoch so one reached on the old signatures never lands in a
 * worker that already runs the new ones.
 */
import { MemoryVerdictCache, type VerdictCache } from '../engine/cache.js';
import type { Verdict } from '../engine/types.js';
import type { CacheSet } from './messages.js';

export class ClusterVerdictCache implements VerdictCache {
  private readonly local: MemoryVerdictCache;
  epoch = 0;
  /** Verdicts sent to and received from other workers. */
  readonly shared = { sent: 0, received: 0, ignored: 0 };

  constructor(
    capacity: number,
    private readonly send: (m: CacheSet) => void,
  ) {
    this.local = new MemoryVerdictCache(capacity);
  }

  get(db: string, sha256: string): Promise<Verdict | undefined> {
    return this.local.get(db, sha256);
  }

  async set(db: string, sha256: string, verdict: Verdict): Promise<void> {
    await this.local.set(db, sha256, verdict);
    if (verdict.status === 'error') return;
    this.shared.sent++;
    this.send({ t: 'sg:cache-set', epoch: this.epoch, db, sha256, verdict });
  }

  /** A verdict another worker reached. */
  receive(m: CacheSet): void {
    if (m.epoch !== this.epoch || (m.verdict.status !== 'clean' && m.verdict.status !== 'infected')) {
      this.shared.ignored++;
      return;
    }
    this.shared.received++;
    void this.local.set(m.db, m.sha256, m.verdict);
  }

  clear(): Promise<void> {
    return this.local.clear();
  }

  stats() {
    return this.local.stats();
  }
}
