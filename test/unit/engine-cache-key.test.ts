import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { engineLimitsSchema } from '../../src/config/schema.js';
import { MemoryVerdictCache } from '../../src/engine/cache.js';
import { BuiltinScanner, loadEngine } from '../../src/engine/index.js';
import { buildCvd } from '../../src/engine/signatures/cvd.js';

/**
 * A local signature file beside a CVD leaves the database's version (the CVD's) unchanged, so the
 * verdict cache must be keyed by what was loaded, not by that version: a cache shared between two
 * processes (Redis) or kept across a reload would otherwise hand out the other database's verdict.
 */
test('verdict cache: a local .ndb beside the same CVD is another database', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-cachekey-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cvd = join(dir, 'daily.cvd');
  writeFileSync(
    cvd,
    buildCvd([{ name: 'a.ndb', data: Buffer.from('Cvd.Body:0:*:6d616c77617265\n') }], 27000),
  );
  const local = join(dir, 'local.ndb');
  writeFileSync(local, 'Local.Sig:0:*:6c6f63616c2d7468726561742d6d61726b6572\n'); // "local-threat-marker"

  const plain = await loadEngine([cvd]);
  const withLocal = await loadEngine([cvd, local]);
  assert.equal(plain.version, '27000');
  assert.equal(withLocal.version, '27000', 'the version people see is still the CVD');
  assert.notEqual(plain.cacheKey, withLocal.cacheKey);
  assert.equal((await loadEngine([cvd])).cacheKey, plain.cacheKey, 'the same files give the same key');

  // One cache shared by both, as workers or gateways share Redis.
  const cache = new MemoryVerdictCache(100);
  const limits = engineLimitsSchema.parse({});
  const sample = Buffer.from('header ... local-threat-marker ... trailer');
  const before = await new BuiltinScanner(plain, { limits, cache }).scan(sample, { name: 'x' });
  assert.equal(before.status, 'clean');
  const after = await new BuiltinScanner(withLocal, { limits, cache }).scan(sample, { name: 'x' });
  assert.equal(after.status, 'infected');
  assert.equal(after.status === 'infected' && after.signature, 'Local.Sig');
});
