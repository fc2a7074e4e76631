/**
 * The event store on both engines (SQLite under dataDir, a private PostgreSQL): events written in
 * batches, queried by time, listener, signature, client (with or without port, v4 and v6), kind,
 * paged backwards by id; hostile field contents stored verbatim but clipped; old events pruned; a
 * flood beyond the queue bound is counted as dropped, never buffered without limit. Plus property
 * tests for the admin API's query-string parser.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import fc from 'fast-check';
import { openEventStore } from '../../src/admin/event-store.js';
import { type EventStore, parseEventQuery } from '../../src/admin/event-store-types.js';
import type { SecurityEvent } from '../../src/admin/events.js';
import { silentLogger } from '../../src/logger.js';
import { postgresForTest } from '../helpers/postgres.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-evstore-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const DAY = 86_400_000;

function ev(over: Partial<SecurityEvent>): SecurityEvent {
  return { kind: 'verdict', listener: 'web', protocol: 'https', action: 'blocked', ...over };
}

async function exercise(store: EventStore): Promise<void> {
  const now = Date.now();
  const at = (msAgo: number) => new Date(now - msAgo).toISOString();
  store.emit(
    ev({ time: at(3 * DAY), client: '10.0.0.1:5000', signature: 'Old.Sig', object: 'https://a.example/old' }),
  );
  store.emit(
    ev({
      time: at(60_000),
      client: '10.0.0.1:5001',
      signature: 'Eicar-Signature',
      location: ['body', 'a.zip', 'x.com'],
    }),
  );
  store.emit(
    ev({
      time: at(30_000),
      listener: 'mail',
      protocol: 'smtp',
      client: '[2001:db8::7]:25',
      signature: 'Eicar-Signature',
      action: 'rejected',
    }),
  );
  store.emit(
    ev({
      time: at(10_000),
      kind: 'tls-failure',
      action: 'error',
      client: '10.0.0.2:7000',
      reason: 'client handshake: alert unknown ca',
    }),
  );
  const hostile = `'; DROP TABLE events; -- ${'\u0000\u202e<script>'.repeat(10)}${'x'.repeat(10_000)}`;
  store.emit(ev({ time: at(5_000), object: hostile, client: 'not an address' }));
  await store.flush();

  const all = await store.query({});
  assert.equal(all.length, 5);
  assert.deepEqual(
    all.map((e) => e.time),
    [...all.map((e) => e.time)].sort().reverse(),
    'newest first',
  );
  assert.equal((await store.query({ listener: 'mail' })).length, 1);
  assert.equal((await store.query({ signature: 'Eicar-Signature' })).length, 2);
  assert.equal((await store.query({ client: '10.0.0.1' })).length, 2, 'by address: every port');
  assert.equal((await store.query({ client: '10.0.0.1:5001' })).length, 1, 'by address and port');
  assert.equal((await store.query({ client: '2001:db8::7' }))[0]?.listener, 'mail');
  assert.equal((await store.query({ kind: 'tls-failure' }))[0]?.reason, 'client handshake: alert unknown ca');
  assert.equal((await store.query({ since: at(DAY) })).length, 4);
  assert.equal((await store.query({ since: at(DAY), until: at(20_000) })).length, 2);
  const located = (await store.query({ signature: 'Eicar-Signature', listener: 'web' }))[0]!;
  assert.deepEqual(located.location, ['body', 'a.zip', 'x.com']);
  const h = (await store.query({ client: 'not an address' }))[0]!;
  assert.equal(h.object, hostile.slice(0, 2048).replace(/\0/g, '\uFFFD'), 'stored verbatim but NUL, clipped');
  assert.equal((await store.query({})).length, 5, 'the table survived');

  const page1 = await store.query({ limit: 2 });
  const page2 = await store.query({ limit: 2, before: page1[1]!.id });
  assert.equal(page2.length, 2);
  assert.ok(page2[0]!.id < page1[1]!.id);

  assert.equal(await store.prune(), 1, 'the 3-day-old event goes (retention 1 day)');
  assert.equal((await store.query({ signature: 'Old.Sig' })).length, 0);
  assert.deepEqual(await store.stats(), { stored: 5, dropped: 0 });

  // A burst beyond the queue bound in one tick: the excess is dropped and counted.
  for (let i = 0; i < 10_100; i++) store.emit(ev({ client: `10.9.${i >> 8}.${i & 255}:1` }));
  await store.flush();
  const s = await store.stats();
  assert.equal(s.stored + s.dropped, 5 + 10_100);
  assert.ok(s.dropped >= 100, `dropped ${s.dropped}`);
}

describe('event store', () => {
  it('SQLite in dataDir', async (t: TestContext) => {
    const store = await openEventStore({
      database: 'sqlite:events.db',
      dataDir: join(dir, 'data'),
      retentionMs: DAY,
      logger: silentLogger,
    });
    t.after(() => store.close());
    await exercise(store);
  });

  it('PostgreSQL', async (t: TestContext) => {
    const server = await postgresForTest(t);
    if (!server) return;
    const url = await server.createDatabase('events_test');
    const store = await openEventStore({
      database: url,
      dataDir: dir,
      retentionMs: DAY,
      logger: silentLogger,
    });
    t.after(() => store.close());
    await exercise(store);
  });
});

describe('parseEventQuery', () => {
  it('takes the documented keys, bounds the limit, refuses bad dates and numbers', () => {
    const q = parseEventQuery(
      new URLSearchParams(
        'listener=web&signature=Eicar&client=1.2.3.4&kind=verdict&since=2026-01-01&limit=5000&before=10&junk=1',
      ),
    );
    assert.deepEqual(q, {
      listener: 'web',
      signature: 'Eicar',
      client: '1.2.3.4',
      kind: 'verdict',
      since: '2026-01-01T00:00:00.000Z',
      limit: 1000,
      before: 10,
    });
    assert.throws(() => parseEventQuery(new URLSearchParams('since=yesterday')), RangeError);
    assert.throws(() => parseEventQuery(new URLSearchParams('limit=-1')), RangeError);
    assert.throws(() => parseEventQuery(new URLSearchParams('before=1e3')), RangeError);
  });

  it('property: any query string parses to a bounded query or a RangeError, never anything else', () => {
    const key = fc.constantFrom(
      'since',
      'until',
      'listener',
      'signature',
      'client',
      'kind',
      'before',
      'limit',
      'other',
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(key, fc.string({ maxLength: 600 })), { maxLength: 12 }), (pairs) => {
        try {
          const q = parseEventQuery(new URLSearchParams(pairs));
          assert.ok(q.limit !== undefined && q.limit >= 0 && q.limit <= 1000);
          for (const k of ['listener', 'signature', 'client', 'kind'] as const)
            assert.ok((q[k]?.length ?? 0) <= 512);
          if (q.since) assert.ok(!Number.isNaN(Date.parse(q.since)));
        } catch (e) {
          assert.ok(e instanceof RangeError, String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
