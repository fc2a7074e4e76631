/**
 * One Kysely handle per database URL, shared by the features that keep state (registry, event
 * store). Two engines, both first-class (DESIGN 5, 7):
 *   sqlite:PATH          embedded default; a relative PATH is resolved against dataDir
 *   sqlite::memory:      a private in-memory database (tests)
 *   postgres://… / postgresql://…   a PostgreSQL server through `pg` (pure JS)
 *
 * Portability rules for callers: timestamps are epoch milliseconds in `bigint` columns (returned as
 * JS numbers on both engines, see INT8 below), booleans are integers 0/1, ids come from
 * `addIdColumn`, and every value goes through Kysely's parameter binding, never string assembly.
 */
import { mkdirSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  type DialectAdapter,
  Kysely,
  PostgresDialect,
  SqliteAdapter,
  type SqliteDatabase,
  SqliteDialect,
  type SqliteStatement,
} from 'kysely';
import { StoreError } from './errors.js';

export type DatabaseKind = 'sqlite' | 'postgres';

export type DatabaseLocation =
  | { kind: 'sqlite'; path: string } // ':memory:' or an absolute path
  | { kind: 'postgres'; connectionString: string };

export interface OpenDatabaseOptions {
  /** Base for relative SQLite paths (config `dataDir`). */
  dataDir: string;
  /** Largest PostgreSQL pool (default 10). SQLite has one connection: better-sqlite3 is synchronous. */
  poolSize?: number;
}

export interface Database<DB> {
  readonly db: Kysely<DB>;
  readonly kind: DatabaseKind;
  /** The URL with any password replaced by `***`, fit for logs and banners. */
  readonly url: string;
  close(): Promise<void>;
}

/** Parses a database URL; throws StoreError ERR_STORE_URL naming the redacted URL. */
export function parseDatabaseUrl(url: string, dataDir: string): DatabaseLocation {
  if (url.startsWith('sqlite:')) {
    const rest = url.slice('sqlite:'.length);
    if (rest === ':memory:') return { kind: 'sqlite', path: ':memory:' };
    // Accept sqlite:///abs/path too (URL style) as an absolute path.
    const path = rest.startsWith('//') ? rest.replace(/^\/\/+/, '/') : rest;
    if (path === '') throw new StoreError('ERR_STORE_URL', 'sqlite: URL names no file');
    return { kind: 'sqlite', path: isAbsolute(path) ? path : resolve(dataDir, path) };
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    try {
      new URL(url);
    } catch {
      throw new StoreError('ERR_STORE_URL', `not a valid PostgreSQL URL: ${redactDatabaseUrl(url)}`);
    }
    return { kind: 'postgres', connectionString: url };
  }
  throw new StoreError(
    'ERR_STORE_URL',
    `unsupported database URL "${redactDatabaseUrl(url)}" (expected sqlite:PATH, postgres://… or postgresql://…)`,
  );
}

/** Hides the password of a URL (and any `password=` query parameter). */
export function redactDatabaseUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^@/?#]*@/i, '$1***@')
    .replace(/([?&]password=)[^&#]*/gi, '$1***');
}

// SQLite DDL is transactional, but Kysely's adapter says otherwise and so runs migrations outside a
// transaction; saying so lets a failed migration roll back whole on both engines.
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}
class ScangateSqliteDialect extends SqliteDialect {
  override createAdapter(): DialectAdapter {
    return new TransactionalDdlSqliteAdapter();
  }
}

/**
 * Kysely's SQLite driver prepares every query afresh; compiling the statement costs as much as
 * running a small indexed query. Prepared statements are reusable in better-sqlite3, and Kysely
 * runs them synchronously (all/run) or to completion (iterate), so one per SQL text is safe.
 */
const STATEMENT_CACHE = 256;
function cachingStatements(conn: { close(): void; prepare(sql: string): SqliteStatement }): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => {
      cache.clear();
      conn.close();
    },
    prepare(sql) {
      let st = cache.get(sql);
      if (st) return st;
      st = conn.prepare(sql);
      if (cache.size >= STATEMENT_CACHE) cache.delete(cache.keys().next().value as string);
      cache.set(sql, st);
      return st;
    },
  };
}

// pg returns int8 (OID 20) as a string to avoid precision loss; our int8 values are epoch
// milliseconds and counts, far below 2^53, so numbers keep both engines' rows the same shape.
const INT8_OID = 20;

export async function openDatabase<DB>(url: string, options: OpenDatabaseOptions): Promise<Database<DB>> {
  const location = parseDatabaseUrl(url, options.dataDir);
  const shown = redactDatabaseUrl(url);
  if (location.kind === 'sqlite') {
    const { default: SQLite } = await import('better-sqlite3');
    let conn: InstanceType<typeof SQLite>;
    try {
      if (location.path !== ':memory:') mkdirSync(dirname(location.path), { recursive: true, mode: 0o700 });
      conn = new SQLite(location.path);
      // WAL: readers never wait for the writer; NORMAL sync is durable across process crashes
      // (not power loss), SQLite's recommended pairing with WAL. busy_timeout covers a second
      // process (a CLI) writing the same file.
      conn.pragma('journal_mode = WAL');
      conn.pragma('synchronous = NORMAL');
      conn.pragma('busy_timeout = 5000');
      conn.pragma('foreign_keys = ON');
    } catch (e) {
      throw new StoreError('ERR_STORE_OPEN', `cannot open ${shown}: ${(e as Error).message}`, { cause: e });
    }
    const db = new Kysely<DB>({ dialect: new ScangateSqliteDialect({ database: cachingStatements(conn) }) });
    return { db, kind: 'sqlite', url: shown, close: () => db.destroy() };
  }
  const pg = await import('pg');
  const Pool = pg.default.Pool;
  const pool = new Pool({
    connectionString: location.connectionString,
    max: options.poolSize ?? 10,
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID && format !== 'binary'
          ? (v: string) => Number(v)
          : pg.default.types.getTypeParser(oid, format ?? 'text')) as typeof pg.default.types.getTypeParser,
    },
  });
  // An idle client losing its server (restart) emits on the pool; without a listener that is an
  // uncaught exception. The next query gets a fresh connection or a proper error.
  pool.on('error', () => {});
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  return { db, kind: 'postgres', url: shown, close: () => db.destroy() };
}
