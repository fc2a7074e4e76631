/**
 * Migrations kept in code, one set per feature namespace (`registry`, `events`, …), so several
 * features share one database without sharing a migration history: each namespace has its own
 * bookkeeping tables `scangate_migrations_<ns>` and `scangate_migrations_<ns>_lock`.
 *
 * Names sort lexicographically (use `001_init`, `002_…`); once released a migration never changes,
 * a later one alters what it made. Each runs in a transaction on PostgreSQL (and SQLite, where DDL
 * is transactional too), so a failure leaves the schema as it was.
 */
import { type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely, Migrator } from 'kysely';
import type { Database, DatabaseKind } from './database.js';
import { StoreError } from './errors.js';

export interface StoreMigration {
  // biome-ignore lint/suspicious/noExplicitAny: migrations run before the typed schema exists
  up(db: Kysely<any>, kind: DatabaseKind): Promise<void>;
  // biome-ignore lint/suspicious/noExplicitAny: see up
  down?(db: Kysely<any>, kind: DatabaseKind): Promise<void>;
}

export type MigrationSet = Readonly<Record<string, StoreMigration>>;

const NAMESPACE = /^[a-z][a-z0-9_]{0,30}$/;

/** Brings `namespace` up to its latest migration; returns the names applied by this call. */
export async function migrateToLatest<DB>(
  database: Database<DB>,
  namespace: string,
  migrations: MigrationSet,
): Promise<string[]> {
  if (!NAMESPACE.test(namespace))
    throw new StoreError(
      'ERR_STORE_MIGRATION',
      `bad migration namespace "${namespace}" (want [a-z][a-z0-9_]*)`,
    );
  const kind = database.kind;
  const migrator = new Migrator({
    db: database.db,
    migrationTableName: `scangate_migrations_${namespace}`,
    migrationLockTableName: `scangate_migrations_${namespace}_lock`,
    provider: {
      getMigrations: async () =>
        Object.fromEntries(
          Object.entries(migrations).map(([name, m]) => [
            name,
            {
              up: (db: Kysely<unknown>) => m.up(db, kind),
              ...(m.down ? { down: (db: Kysely<unknown>) => m.down?.(db, kind) ?? Promise.resolve() } : {}),
            },
          ]),
        ),
    },
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new StoreError(
      'ERR_STORE_MIGRATION',
      `${namespace}${failed ? ` migration ${failed}` : ''} failed on ${database.url}: ${(error as Error).message ?? error}`,
      { cause: error },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Adds an auto-assigned integer primary key `name` in the engine's idiom (SQLite's rowid alias,
 * PostgreSQL's identity column); both return it through `.returning(name)`.
 */
export function addIdColumn<TB extends string, C extends string>(
  table: CreateTableBuilder<TB, C>,
  kind: DatabaseKind,
  name = 'id',
): CreateTableBuilder<TB, C | typeof name> {
  return kind === 'postgres'
    ? table.addColumn(name, 'bigint', (c: ColumnDefinitionBuilder) =>
        c.primaryKey().generatedAlwaysAsIdentity(),
      )
    : table.addColumn(name, 'integer', (c: ColumnDefinitionBuilder) => c.primaryKey().autoIncrement());
}
