/**
 * Persistent state for features that need it (registry, event store): a Kysely handle from a
 * database URL (SQLite default, PostgreSQL) and per-feature in-code migrations.
 */
export {
  type Database,
  type DatabaseKind,
  type DatabaseLocation,
  type OpenDatabaseOptions,
  openDatabase,
  parseDatabaseUrl,
  redactDatabaseUrl,
} from './database.js';
export { StoreError } from './errors.js';
export { addIdColumn, type MigrationSet, migrateToLatest, type StoreMigration } from './migrate.js';
