/**
 * The event store (DESIGN 4.3, 7): every event the sink hears, in SQLite under dataDir by default or
 * PostgreSQL, queryable by time, listener, signature and client. emit() never waits on the database:
 * events queue (bounded; overflow is counted, never buffered without limit) and are written in
 * batches, one transaction each. Old events are deleted after `retention`.
 */
import type { Generated, Kysely } from 'kysely';
import type { Logger } from '../logger.js';
import {
  addIdColumn,
  type Database,
  type MigrationSet,
  migrateToLatest,
  openDatabase,
} from '../store/index.js';
import type { EventQuery, EventStore, StoredEvent } from './event-store-types.js';
import type { SecurityEvent } from './events.js';

interface EventsTable {
  id: Generated<number>;
  time: number;
  listener: string;
  protocol: string;
  kind: string;
  action: string;
  client: string | null;
  /** The client address without its port, so a query by address finds every connection. */
  client_host: string | null;
  server: string | null;
  object: string | null;
  signature: string | null;
  location: string | null;
  reason: string | null;
}

type NewEvent = Omit<EventsTable, 'id'>;
type EventRow = Omit<EventsTable, 'id'> & { id: number };

interface EventsDb {
  events: EventsTable;
}

const MIGRATIONS: MigrationSet = {
  '001_events': {
    async up(db, kind) {
      await addIdColumn(db.schema.createTable('events'), kind)
        .addColumn('time', 'bigint', (c) => c.notNull())
        .addColumn('listener', 'text', (c) => c.notNull())
        .addColumn('protocol', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('client', 'text')
        .addColumn('client_host', 'text')
        .addColumn('server', 'text')
        .addColumn('object', 'text')
        .addColumn('signature', 'text')
        .addColumn('location', 'text')
        .addColumn('reason', 'text')
        .execute();
      await db.schema.createIndex('events_time').on('events').column('time').execute();
      await db.schema
        .createIndex('events_listener_time')
        .on('events')
        .columns(['listener', 'time'])
        .execute();
      await db.schema
        .createIndex('events_signature_time')
        .on('events')
        .columns(['signature', 'time'])
        .execute();
      await db.schema
        .createIndex('events_client_time')
        .on('events')
        .columns(['client_host', 'time'])
        .execute();
    },
  },
};

const MAX_QUEUE = 10_000;
const BATCH = 500;
const FIELD_MAX = 2048;

/** Clipped, and NUL (which PostgreSQL text refuses) made U+FFFD on both engines alike. */
const clip = (s: string | undefined): string | null =>
  s === undefined ? null : s.slice(0, FIELD_MAX).replace(/\0/g, '\uFFFD');

/** "1.2.3.4:5" → "1.2.3.4", "[::1]:5" → "::1"; anything else unchanged. */
export function hostOf(client: string | undefined): string | null {
  if (!client) return null;
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(client);
  if (v6) return v6[1]!;
  const v4 = /^([^:]+):\d+$/.exec(client);
  return v4 ? v4[1]! : client;
}

function toRow(e: SecurityEvent): NewEvent {
  return {
    time: e.time ? Date.parse(e.time) || Date.now() : Date.now(),
    listener: clip(e.listener.slice(0, 256)) ?? '',
    protocol: clip(e.protocol.slice(0, 64)) ?? '',
    kind: clip(e.kind.slice(0, 64)) ?? '',
    action: clip(e.action.slice(0, 64)) ?? '',
    client: clip(e.client),
    client_host: clip(hostOf(e.client) ?? undefined),
    server: clip(e.server),
    object: clip(e.object),
    signature: clip(e.signature),
    location: e.location ? JSON.stringify(e.location).slice(0, FIELD_MAX) : null,
    reason: clip(e.reason),
  };
}

function fromRow(r: EventRow): StoredEvent {
  const e: StoredEvent = {
    id: Number(r.id),
    time: new Date(Number(r.time)).toISOString(),
    listener: r.listener,
    protocol: r.protocol,
    kind: r.kind,
    action: r.action as StoredEvent['action'],
  };
  if (r.client !== null) e.client = r.client;
  if (r.server !== null) e.server = r.server;
  if (r.object !== null) e.object = r.object;
  if (r.signature !== null) e.signature = r.signature;
  if (r.reason !== null) e.reason = r.reason;
  if (r.location !== null) {
    try {
      e.location = JSON.parse(r.location) as string[];
    } catch {
      // a clipped location stays out rather than failing the query
    }
  }
  return e;
}

export interface SqlEventStoreOptions {
  database: string;
  dataDir: string;
  retentionMs: number;
  logger: Logger;
}

export async function openEventStore(o: SqlEventStoreOptions): Promise<EventStore> {
  const database: Database<EventsDb> = await openDatabase<EventsDb>(o.database, { dataDir: o.dataDir });
  try {
    await migrateToLatest(database, 'events', MIGRATIONS);
  } catch (e) {
    await database.close();
    throw e;
  }
  return new SqlEventStore(database, o);
}

class SqlEventStore implements EventStore {
  private queue: NewEvent[] = [];
  private writing: Promise<void> | null = null;
  private stored = 0;
  private dropped = 0;
  private readonly db: Kysely<EventsDb>;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly database: Database<EventsDb>,
    private readonly o: SqlEventStoreOptions,
  ) {
    this.db = database.db;
    this.sweeper = setInterval(() => void this.sweep(), 3_600_000);
    this.sweeper.unref();
    void this.sweep();
  }

  emit(event: SecurityEvent): void {
    if (this.closed) return;
    if (this.queue.length >= MAX_QUEUE) {
      this.dropped++;
      return;
    }
    this.queue.push(toRow(event));
    this.writing ??= this.drain();
  }

  private async drain(): Promise<void> {
    // Let a burst of events from one tick land in one transaction.
    await new Promise((r) => setImmediate(r));
    try {
      while (this.queue.length) {
        const batch = this.queue.splice(0, BATCH);
        try {
          await this.db.transaction().execute((tx) => tx.insertInto('events').values(batch).execute());
          this.stored += batch.length;
        } catch (e) {
          // One bad row must not take the batch with it: retry each, drop only what still fails.
          this.o.logger.warn(
            { err: (e as Error).message, events: batch.length },
            'event store: batch write failed; writing one by one',
          );
          for (const row of batch) {
            try {
              await this.db.insertInto('events').values(row).execute();
              this.stored++;
            } catch (e1) {
              this.dropped++;
              this.o.logger.error({ err: (e1 as Error).message }, 'event store: event not written');
            }
          }
        }
      }
    } finally {
      this.writing = null;
    }
  }

  private async sweep(): Promise<void> {
    try {
      await this.prune();
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, 'event store: retention sweep failed');
    }
  }

  async prune(): Promise<number> {
    const r = await this.db
      .deleteFrom('events')
      .where('time', '<', Date.now() - this.o.retentionMs)
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async query(q: EventQuery): Promise<StoredEvent[]> {
    let sel = this.db.selectFrom('events').selectAll();
    if (q.since) sel = sel.where('time', '>=', Date.parse(q.since));
    if (q.until) sel = sel.where('time', '<=', Date.parse(q.until));
    if (q.listener) sel = sel.where('listener', '=', q.listener);
    if (q.signature) sel = sel.where('signature', '=', q.signature);
    if (q.kind) sel = sel.where('kind', '=', q.kind);
    if (q.before !== undefined) sel = sel.where('id', '<', q.before);
    if (q.client) {
      const c = q.client;
      // "1.2.3.4:5" is one connection; "1.2.3.4" (or "::1") is every connection from that address.
      sel =
        hostOf(c) !== c
          ? sel.where('client', '=', c)
          : sel.where((eb) => eb.or([eb('client', '=', c), eb('client_host', '=', c)]));
    }
    const rows = await sel
      .orderBy('id', 'desc')
      .limit(Math.min(q.limit ?? 100, 1000))
      .execute();
    return rows.map((r) => fromRow(r as EventRow));
  }

  async stats(): Promise<{ stored: number; dropped: number }> {
    return { stored: this.stored, dropped: this.dropped };
  }

  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    clearInterval(this.sweeper);
    await this.database.close();
  }
}
