/**
 * A Spool's scan input (what the FTP gateway hands the engine after receiving a file): the builtin
 * scanner takes the digest the Spool computed while the bytes were written instead of hashing them
 * again, and the cache ends up keyed by the real SHA-256 of the content, for both the in-memory and
 * the temp-file form. Inputs that did not come from a Spool are hashed as before.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MemoryVerdictCache } from '../../src/engine/cache.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import { Spool, spooledDigest } from '../../src/engine/source.js';
import { EICAR } from '../helpers/eicar.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function spooled(dir: string, parts: Buffer[], memoryLimit: number): Promise<Spool> {
  const spool = new Spool({ dir, memoryLimit });
  for (const p of parts) await spool.write(p);
  await spool.finish();
  return spool;
}

test('spooled inputs (memory and temp file) are judged like the bytes and cached under their real SHA-256', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-spool-input-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cache = new MemoryVerdictCache(100);
  const scanner = await createBuiltinScanner({ cache });
  const version = scanner.cacheKey();
  const infected = Buffer.concat([randomBytes(3000), EICAR, randomBytes(5000)]);
  const clean = randomBytes(300_000);
  for (const memoryLimit of [1024 * 1024, 1024]) {
    for (const [content, status] of [
      [infected, 'infected'],
      [clean, 'clean'],
    ] as const) {
      // Cut into uneven parts: the digest must cover exactly the bytes in order.
      const parts = [content.subarray(0, 777), content.subarray(777, 5000), content.subarray(5000)];
      const spool = await spooled(dir, parts, memoryLimit);
      t.after(() => spool.dispose());
      const input = spool.scanInput();
      assert.equal(Buffer.isBuffer(input), memoryLimit > content.length, 'memory or temp file as expected');
      assert.equal(spooledDigest(input), sha256(content));
      const v = await scanner.scan(input, { name: 'upload.bin', size: spool.size });
      assert.equal(v.status, status);
      assert.equal((await cache.get(version, sha256(content)))?.status, status);
      await cache.clear();
    }
  }
});

test('a Spool past its memory limit writes every byte in order, however the writes were cut', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-spool-input-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const content = randomBytes(900_000);
  // 1-byte writes (more than one writev may carry), one write larger than a batch, uneven rest.
  const cuts = [...Array.from({ length: 3000 }, (_, i) => i + 1), 600_000, 600_013, 777_777];
  const parts = [0, ...cuts].map((from, i) => content.subarray(from, cuts[i] ?? content.length));
  for (const memoryLimit of [0, 1024, 300_000]) {
    const spool = await spooled(dir, parts, memoryLimit);
    t.after(() => spool.dispose());
    const { source, sha256: digest } = await spool.finish();
    assert.ok(!Buffer.isBuffer(spool.scanInput()), `memoryLimit ${memoryLimit}: spilled to a temp file`);
    assert.equal(source.size, content.length);
    assert.ok(
      (await source.read(0, content.length)).equals(content),
      `memoryLimit ${memoryLimit}: same bytes`,
    );
    assert.equal(digest, sha256(content));
  }
});

test('an input that did not come from a Spool carries no digest and is hashed by the scanner', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-spool-input-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cache = new MemoryVerdictCache(100);
  const scanner = await createBuiltinScanner({ cache });
  const version = scanner.cacheKey();
  const path = join(dir, 'eicar.com');
  writeFileSync(path, EICAR);
  const input = { path };
  assert.equal(spooledDigest(input), undefined);
  assert.equal((await scanner.scan(input)).status, 'infected');
  assert.equal((await cache.get(version, sha256(EICAR)))?.status, 'infected');
  const buffer = Buffer.concat([Buffer.from('x'), EICAR]);
  assert.equal(spooledDigest(buffer), undefined);
  assert.equal((await scanner.scan(buffer)).status, 'infected');
  assert.equal((await cache.get(version, sha256(buffer)))?.status, 'infected');
});

test('a Buffer larger than the engine spool is scanned in place and still bound by maxFileSize', async () => {
  const big = Buffer.concat([randomBytes(20 * 1024 * 1024), EICAR]);
  const scanner = await createBuiltinScanner({ cacheEntries: 0, limits: { maxFileSize: 64 * 1024 * 1024 } });
  const v = await scanner.scan(big, { name: 'big.bin' });
  assert.equal(v.status, 'infected');
  const small = await createBuiltinScanner({ cacheEntries: 0, limits: { maxFileSize: 1024 * 1024 } });
  const limited = await small.scan(big, { name: 'big.bin' });
  assert.ok(limited.status === 'infected' && limited.signature === 'Heuristics.Limits.Exceeded.MaxFileSize');
});

test('scanInput before finish is refused', () => {
  assert.throws(() => new Spool().scanInput(), /not finished/);
});

test('a Spool without a digest keeps the bytes, gives no SHA-256 and no scan input', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-spool-input-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const content = randomBytes(5000);
  for (const memoryLimit of [1024 * 1024, 1024]) {
    const spool = new Spool({ dir, memoryLimit, digest: false });
    t.after(() => spool.dispose());
    await spool.write(content.subarray(0, 1234));
    await spool.write(content.subarray(1234));
    const { source, sha256 } = await spool.finish();
    assert.equal(sha256, null);
    assert.deepEqual(await source.read(0, source.size), content);
    assert.throws(() => spool.scanInput(), /without a digest/);
  }
});
