/**
 * The IPC vocabulary between the cluster primary and its workers (node:cluster's channel, JSON).
 * Every message carries `t` starting with "sg:" so other users of the channel (prom-client) are
 * told apart.
 */

import type { SecurityEvent } from '../admin/events.js';
import type { AdminStatus } from '../admin/server.js';
import type { Verdict } from '../engine/types.js';

export interface CacheSet {
  t: 'sg:cache-set';
  /** Reload epoch the verdict was reached in; other epochs' verdicts are ignored. */
  epoch: number;
  db: string;
  sha256: string;
  verdict: Verdict;
}

export type WorkerMessage =
  | { t: 'sg:ready'; status: AdminStatus; banner: string[] }
  | { t: 'sg:event'; event: SecurityEvent }
  | CacheSet
  | { t: 'sg:metrics'; id: number; metrics: unknown[] }
  | { t: 'sg:status'; id: number; status: AdminStatus }
  | { t: 'sg:reloaded'; epoch: number; error?: string };

export type PrimaryMessage =
  | CacheSet
  | { t: 'sg:metrics?'; id: number }
  | { t: 'sg:status?'; id: number }
  | { t: 'sg:reload'; epoch: number }
  | { t: 'sg:drain'; deadlineMs: number };

export function isSgMessage(m: unknown): m is { t: string } {
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof (m as { t?: unknown }).t === 'string' &&
    (m as { t: string }).t.startsWith('sg:')
  );
}
