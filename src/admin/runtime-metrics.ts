/**
 * Metrics read from live objects at scrape time: the engine's signature count, the verdict cache's
 * hits and misses, and what the spool holds on disk. The gateway points them at its current state
 * (which changes on reload); the last gateway started in a process wins.
 */
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Counter } from 'prom-client';
import type { VerdictCache } from '../engine/cache.js';
import type { Scanner } from '../engine/types.js';
import { gauge, registry } from './metrics.js';

export interface RuntimeView {
  scanner(): Scanner;
  cache(): VerdictCache | null;
  listeners(): number;
  spoolDir: string;
}

/** A counter fed from a cumulative number that may restart from 0 (a new cache after reload). */
function counterFrom(name: string, help: string, read: () => number): void {
  if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
  let last = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now < last) last = 0;
      if (now > last) this.inc(now - last);
      last = now;
    },
  });
}

/** Bytes and files (ending in `suffix`) in a folder; bounded walk: the first 10,000 entries. */
export async function spoolUsage(dir: string, suffix = ''): Promise<{ bytes: number; files: number }> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return { bytes: 0, files: 0 };
  }
  let bytes = 0;
  let files = 0;
  for (const e of entries.slice(0, 10_000)) {
    if (!e.isFile() || !e.name.endsWith(suffix)) continue;
    try {
      bytes += (await stat(join(dir, e.name))).size;
      files++;
    } catch {
      // removed while we looked
    }
  }
  return { bytes, files };
}

export function registerRuntimeMetrics(v: RuntimeView): void {
  const stats = () => v.cache()?.stats() ?? { hits: 0, misses: 0, size: 0 };
  gauge(
    'scangate_signatures',
    'Signatures loaded in the scanning engine',
    () => v.scanner().version().signatures,
    'max',
  );
  gauge('scangate_listeners', 'Listeners bound', () => v.listeners(), 'max');
  counterFrom(
    'scangate_verdict_cache_hits_total',
    'Verdict cache lookups answered from the cache',
    () => stats().hits,
  );
  counterFrom(
    'scangate_verdict_cache_misses_total',
    'Verdict cache lookups that had to scan',
    () => stats().misses,
  );
  gauge(
    'scangate_verdict_cache_hit_ratio',
    'Verdict cache hits / lookups since start (0 before the first lookup)',
    () => {
      const s = stats();
      return s.hits + s.misses ? s.hits / (s.hits + s.misses) : 0;
    },
    'average',
  );
  gauge('scangate_verdict_cache_entries', 'Verdicts held in the cache', () => stats().size, 'max');
  // Every worker sees the same folder, so the cluster figure is the max, not the sum.
  gauge(
    'scangate_spool_bytes',
    'Bytes of spooled objects on disk (dataDir/spool)',
    async () => (await spoolUsage(v.spoolDir)).bytes,
    'max',
  );
  gauge(
    'scangate_spool_files',
    'Spooled objects on disk (dataDir/spool)',
    async () => (await spoolUsage(v.spoolDir)).files,
    'max',
  );
}
