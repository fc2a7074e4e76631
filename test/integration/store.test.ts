/**
 * src/store against both engines: a SQLite file in a temp dataDir and a private PostgreSQL cluster.
 * Two migration namespaces share one database without sharing history; a failing migration leaves
 * nothing behind and its error never shows the password.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { sql } from 'kysely';
import {
  addIdColumn,
  type Database,
  type MigrationSet,
  migrateToLatest,
  openDatabase,
} from '../../src/store/index.js';
import { postgresForTest } from '../helpers/postgres.js';

interface ThingTable {
  id: number;
  name: string;
  at: number;
}

const alpha: MigrationSet = {
  '001_init': {
    async up(db, kind) {
      await addIdColumn(db.schema.createTable('alpha_thing'), kind)
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
};
const beta: MigrationSet = {
  '001_init': {
    async up(db) {
      await db.schema
        .createTable('beta_thing')
        .addColumn('k', 'text', (c) => c.primaryKey())
        .execute();
    },
  },
};

async function exercise(database: Database<{ alpha_thing: ThingTable }>, url: string) {
  assert.deepEqual(await migrateToLatest(database, 'alpha', alpha), ['001_init']);
  // Same migration name in another namespace: its own history, so it runs too.
  assert.deepEqual(await migrateToLatest(database, 'beta', beta), ['001_init']);
  assert.deepEqual(await migrateToLatest(database, 'alpha', alpha), [], 'second run applies nothing');

  const at = Date.UTC(2026, 10, 23, 12, 0, 0, 123);
  const row = await database.db
    .insertInto('alpha_thing')
    .values({ name: "o'hara; drop table alpha_thing --", at } as never)
    .returning('id')
    .executeTakeFirstOrThrow();
  assert.equal(typeof row.id, 'number');
  const back = await database.db.selectFrom('alpha_thing').selectAll().executeTakeFirstOrThrow();
  assert.equal(back.name, "o'hara; drop table alpha_thing --", 'value bound, not spliced into SQL');
  assert.equal(back.at, at, 'bigint comes back as the same JS number on both engines');
  const count = await database.db
    .selectFrom('alpha_thing')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  assert.equal(Number(count.n), 1);

  // A failing migration: the table it created first is rolled back with it.
  const broken: MigrationSet = {
    ...alpha,
    '002_broken': {
      async up(db) {
        await db.schema.createTable('alpha_half').addColumn('x', 'text').execute();
        await sql`select * from no_such_table`.execute(db);
      },
    },
  };
  await assert.rejects(migrateToLatest(database, 'alpha', broken), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'ERR_STORE_MIGRATION');
    assert.match(e.message, /002_broken/);
    const pw = /:\/\/[^:]+:([^@]+)@/.exec(url)?.[1];
    if (pw) assert.ok(!e.message.includes(pw), 'password not in the error');
    return true;
  });
  const tables = await database.db.introspection.getTables();
  assert.ok(!tables.some((t) => t.name === 'alpha_half'), 'failed migration left no table');
  await assert.rejects(migrateToLatest(database, 'Bad-Name', alpha), /namespace/);
}

test('store on SQLite: file created under dataDir, namespaced migrations, bound values', async (t: TestContext) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'scangate-store-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const database = await openDatabase<{ alpha_thing: ThingTable }>('sqlite:sub/state.db', { dataDir });
  t.after(() => database.close());
  assert.equal(database.kind, 'sqlite');
  await exercise(database, 'sqlite:sub/state.db');
});

test('store on PostgreSQL: same behaviour on a private cluster', async (t: TestContext) => {
  const server = await postgresForTest(t);
  if (!server) return;
  const url = await server.createDatabase('store_test');
  const database = await openDatabase<{ alpha_thing: ThingTable }>(url, { dataDir: tmpdir() });
  t.after(() => database.close());
  assert.equal(database.kind, 'postgres');
  assert.ok(!database.url.includes(new URL(url).password), 'shown URL is redacted');
  await exercise(database, url);
});
