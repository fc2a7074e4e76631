/**
 * The shared verdict cache (issue 8, done-when 4): 4 clients sending the same 100 files at once
 * make the engine scan each distinct file once (the engine's scan counter, also in STATS); a second
 * daemon sharing the Redis (a real redis-server on an ephemeral port) answers all of them from
 * Redis without scanning; a reload to a new database reads no old verdict; and Redis going away
 * turns into misses, never into failed scans.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { configSchema } from '../../src/config/schema.js';
import { chunkHeader, END_OF_STREAM } from '../../src/engine/backends/clamd-protocol.js';
import { createVerdictCache, type TieredVerdictCache } from '../../src/engine/cache-redis.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { BuiltinScanner } from '../../src/engine/scanner.js';
import { exchange, type ScangateClamd, startScangateClamd } from '../helpers/clamd-daemon.js';
import { EICAR } from '../helpers/eicar.js';
import { peer } from '../helpers/peers.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { rng } from '../helpers/sigdb.js';

let dir: string;
let db: string;
let redis: RedisServer | null = null;
const daemons: ScangateClamd[] = [];
const scanners: BuiltinScanner[] = [];

const instream = (data: Buffer) =>
  Buffer.concat([Buffer.from('zINSTREAM\0'), chunkHeader(data.length), data, END_OF_STREAM]);

function files(): Buffer[] {
  const r = rng(44);
  return Array.from({ length: 100 }, (_, i) =>
    i % 10 === 0 ? Buffer.concat([r.bytes(i * 7), EICAR]) : r.bytes(1000 + i * 97),
  );
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-redis-cache-'));
  db = join(dir, 'local.ndb');
  writeFileSync(db, 'Test.Cache.One:0:*:6361636865206f6e65\n');
});

after(async () => {
  for (const d of daemons) await d.service.close(0);
  for (const s of scanners) await s.close();
  redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function daemonWithCache(redisUrl: string | null): Promise<{ d: ScangateClamd; s: BuiltinScanner }> {
  const cfg = configSchema.parse({ engine: { cache: { redis: redisUrl, redisTimeout: '2s' } } });
  const s = await createBuiltinScanner({ signatures: [db], cache: createVerdictCache(cfg.engine.cache) });
  const d = await startScangateClamd(
    s,
    { listen: '127.0.0.1:0', maxScans: 8 },
    { engine: { signatures: [db] } },
  );
  daemons.push(d);
  scanners.push(s);
  return { d, s };
}

/** 4 clients, each sending all 100 files over its own connections, all at once. */
async function fourClients(address: string, data: Buffer[]): Promise<string[][]> {
  return Promise.all(
    [0, 1, 2, 3].map(async () => {
      const replies: string[] = [];
      for (let i = 0; i < data.length; i += 10) {
        const batch = data.slice(i, i + 10).map((f) => exchange(address, instream(f)));
        replies.push(...(await Promise.all(batch)).map((b) => b.toString()));
      }
      return replies;
    }),
  );
}

test('4 clients x the same 100 files: each distinct file is scanned once (memory cache, joined scans)', async () => {
  const { d, s } = await daemonWithCache(null);
  const data = files();
  const all = await fourClients(d.address, data);
  const want = data.map((_, i) => (i % 10 === 0 ? 'stream: Eicar-Signature FOUND\0' : 'stream: OK\0'));
  for (const replies of all) assert.deepEqual(replies, want);
  assert.equal(s.counters.scans, 100);
  const stats = (await exchange(d.address, Buffer.from('zSTATS\0'))).toString();
  assert.match(stats, /\nSCANGATE: scans 100 /);
});

test('two daemons sharing Redis: the second answers the first one’s files from the cache', async (t) => {
  const bin = peer(t, 'redis-server', 'redis-server');
  if (!bin) return;
  redis = await startRedis(bin);
  const first = await daemonWithCache(redis.url);
  const second = await daemonWithCache(redis.url);
  const data = files();
  await fourClients(first.d.address, data);
  assert.equal(first.s.counters.scans, 100);

  const replies = await Promise.all(data.map((f) => exchange(second.d.address, instream(f))));
  assert.equal(replies.filter((r) => r.toString() === 'stream: Eicar-Signature FOUND\0').length, 10);
  assert.equal(replies.filter((r) => r.toString() === 'stream: OK\0').length, 90);
  assert.equal(second.s.counters.scans, 0, 'the second daemon scanned nothing');
  const stats = second.s.cacheStats() as ReturnType<TieredVerdictCache['stats']>;
  assert.equal(stats.sharedHits, 100);

  // A new database on the second daemon: old verdicts are keyed by the old version and go unread.
  writeFileSync(db, 'Test.Cache.Two:0:*:6361636865207477ff\n');
  assert.equal((await exchange(second.d.address, Buffer.from('zRELOAD\0'))).toString(), 'RELOADING\0');
  const v0 = first.s.version().databaseVersion;
  for (let i = 0; i < 100 && second.s.version().databaseVersion === v0; i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.notEqual(second.s.version().databaseVersion, v0);
  await exchange(second.d.address, instream(data[1]!));
  assert.equal(second.s.counters.scans, 1);

  // Redis gone: a miss and a scan, the verdict as always.
  redis.stop();
  const fresh = Buffer.concat([Buffer.from('never seen '), EICAR]);
  assert.equal(
    (await exchange(second.d.address, instream(fresh))).toString(),
    'stream: Eicar-Signature FOUND\0',
  );
  assert.equal(second.s.counters.scans, 2);
  assert.ok((second.s.cacheStats() as ReturnType<TieredVerdictCache['stats']>).sharedFailures > 0);
});
