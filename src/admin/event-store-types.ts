/**
 * What the admin API needs from the event store; the SQL implementation lives in event-store.ts.
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { EventSink, SecurityEvent } from './events.js';

export interface EventQuery {
  /** ISO-8601 bounds, inclusive. */
  since?: string;
  until?: string;
  listener?: string;
  signature?: string;
  /** Matches the client address with or without its port. */
  client?: string;
  kind?: string;
  /** Only events with an id below this (paging backwards). */
  before?: number;
  /** At most this many, newest first (default 100, max 1000). */
  limit?: number;
}

export interface StoredEvent extends SecurityEvent {
  id: number;
  time: string;
}

export interface EventStore extends EventSink {
  query(q: EventQuery): Promise<StoredEvent[]>;
  /** Events stored so far, and those dropped because the database could not keep up or failed. */
  stats(): Promise<{ stored: number; dropped: number }>;
  /** Deletes events older than the retention; returns how many (also run hourly by itself). */
  prune(): Promise<number>;
  /** Resolves when every event emitted so far is written. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Parses the admin API's query string into an EventQuery (unknown keys ignored, bad values refused). */
export function parseEventQuery(params: URLSearchParams): EventQuery {
  const q: EventQuery = {};
  for (const key of ['since', 'until'] as const) {
    const v = params.get(key);
    if (v !== null) {
      const t = Date.parse(v);
      if (Number.isNaN(t)) throw new RangeError(`${key}: not a date`);
      q[key] = new Date(t).toISOString();
    }
  }
  for (const key of ['listener', 'signature', 'client', 'kind'] as const) {
    const v = params.get(key);
    if (v !== null && v !== '') q[key] = v.slice(0, 512);
  }
  for (const key of ['before', 'limit'] as const) {
    const v = params.get(key);
    if (v !== null) {
      if (!/^\d{1,12}$/.test(v)) throw new RangeError(`${key}: not a number`);
      q[key] = Number(v);
    }
  }
  q.limit = Math.min(q.limit ?? 100, 1000);
  return q;
}

/** The store `events:` names (loaded only when configured, so no database driver loads otherwise). */
export async function openConfiguredEventStore(
  config: Pick<Config, 'events' | 'dataDir'>,
  logger: Logger,
): Promise<EventStore | null> {
  if (!config.events) return null;
  const { openEventStore } = await import('./event-store.js');
  return openEventStore({
    database: config.events.database,
    dataDir: config.dataDir,
    retentionMs: config.events.retention,
    logger,
  });
}
