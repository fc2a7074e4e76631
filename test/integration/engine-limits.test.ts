/**
 * Hostile containers end with a clear verdict within the limits, in bounded memory, without a crash
 * (issue "done when" 6): a zip bomb, a container nested 10,000 deep, a truncated zip, a corrupted gzip.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32, createDeflateRaw, gzipSync } from 'node:zlib';
import { createBuiltinScanner } from '../../src/engine/index.js';
import { EICAR } from '../helpers/eicar.js';
import { buildZip } from '../helpers/zipwriter.js';

/** Deflates `size` zero bytes without ever holding them: a bomb's payload. */
async function deflatedZeros(size: number): Promise<{ data: Buffer; size: number; crc: number }> {
  const z = createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  z.on('data', (c: Buffer) => out.push(c));
  const block = Buffer.alloc(1024 * 1024);
  let crc = 0;
  for (let done = 0; done < size; done += block.length) {
    crc = crc32(block, crc);
    if (!z.write(block)) await new Promise((r) => z.once('drain', r));
  }
  await new Promise((r) => z.end(r));
  return { data: Buffer.concat(out), size, crc };
}

test('a zip bomb (4 GiB of zeros in one entry, nested twice) ends with a limit verdict in bounded memory', async () => {
  const scanner = await createBuiltinScanner();
  const inner = buildZip([{ name: 'zeros.bin', deflated: await deflatedZeros(1024 * 1024 * 1024) }]);
  const bomb = buildZip([
    { name: 'a.zip', data: inner },
    { name: 'b.zip', data: inner },
  ]);
  const rss0 = process.memoryUsage().rss;
  const t0 = Date.now();
  const v = await scanner.scan(bomb, { name: 'bomb.zip' });
  const grew = process.memoryUsage().rss - rss0;
  assert.equal(v.status, 'infected');
  assert.ok(
    v.status === 'infected' && v.signature.startsWith('Heuristics.Limits.Exceeded.'),
    JSON.stringify(v),
  );
  assert.ok(grew < 400 * 1024 * 1024, `rss grew by ${grew >> 20} MiB`);
  assert.ok(Date.now() - t0 < 60_000);
});

test('with alertExceedsMax off a limit hit is reported clean, as clamd does by default', async () => {
  const scanner = await createBuiltinScanner({ limits: { alertExceedsMax: false, maxFileSize: 1024 } });
  const v = await scanner.scan(Buffer.alloc(4096, 1), { name: 'big.bin' });
  assert.deepEqual(v, { status: 'clean' });
});

test('a container nested 10,000 deep stops at maxRecursion with a clear verdict', async () => {
  let data = EICAR;
  // Stored (level 0) layers keep building 10,000 of them cheap; the scanner sees real gzip members.
  for (let i = 0; i < 10_000; i++) data = gzipSync(data, { level: 0 });
  const scanner = await createBuiltinScanner();
  const v = await scanner.scan(data, { name: 'deep.gz' });
  assert.equal(v.status, 'infected');
  assert.ok(v.status === 'infected');
  assert.equal(v.signature, 'Heuristics.Limits.Exceeded.MaxRecursion');

  // Within the limit the payload is found, with its location path.
  let shallow = EICAR;
  for (let i = 0; i < 5; i++) shallow = gzipSync(shallow);
  const v2 = await scanner.scan(shallow, { name: 'five.gz' });
  assert.equal(v2.status, 'infected');
  assert.ok(v2.status === 'infected' && v2.signature === 'Eicar-Signature');
  assert.equal(v2.status === 'infected' && v2.location.length, 6);
});

test('a truncated zip and a corrupted gzip give a verdict, not a crash', async () => {
  const scanner = await createBuiltinScanner();
  const filler = Buffer.alloc(50_000, 0x41);
  const zip = buildZip([
    { name: 'first.txt', data: filler },
    { name: 'eicar.com', data: EICAR, method: 0 },
  ]);
  // Cut off the central directory: the local headers still lead to the entries.
  const truncated = zip.subarray(0, zip.length - 60);
  const v = await scanner.scan(truncated, { name: 'truncated.zip' });
  assert.notEqual(v.status, 'error', JSON.stringify(v));

  const cleanTruncated = buildZip([{ name: 'a.txt', data: filler }]).subarray(0, 200);
  assert.deepEqual(await scanner.scan(cleanTruncated, { name: 'cut.zip' }), { status: 'clean' });

  const gz = gzipSync(Buffer.concat([filler, filler]));
  for (let i = 20; i < gz.length - 8; i += 97) gz[i] = gz[i]! ^ 0xff;
  const vg = await scanner.scan(gz, { name: 'corrupt.gz' });
  assert.equal(vg.status, 'clean', JSON.stringify(vg));
});

test("the verdict cache answers a repeated object and keeps the caller's name in the location", async () => {
  const scanner = await createBuiltinScanner();
  const gz = gzipSync(EICAR);
  const a = await scanner.scan(gz, { name: 'first.gz' });
  const b = await scanner.scan(gz, { name: 'second.gz' });
  assert.ok(a.status === 'infected' && b.status === 'infected');
  assert.equal(a.location[0], 'first.gz');
  assert.equal(b.location[0], 'second.gz');
  assert.deepEqual(a.location.slice(1), b.location.slice(1));
});

test('a scan past its time limit is a verdict, and a caller abort is an error', async () => {
  const scanner = await createBuiltinScanner({ limits: { timeout: 1 } });
  const big = Buffer.alloc(50 * 1024 * 1024, 3);
  const v = await scanner.scan(big, { name: 'slow.bin' });
  assert.ok(
    v.status === 'infected' && v.signature === 'Heuristics.Limits.Exceeded.MaxScanTime',
    JSON.stringify(v),
  );
  const s2 = await createBuiltinScanner();
  const ac = new AbortController();
  ac.abort();
  const v2 = await s2.scan(Buffer.alloc(10), { signal: ac.signal });
  assert.equal(v2.status, 'error');
});
