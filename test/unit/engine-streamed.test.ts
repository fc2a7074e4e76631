/**
 * Streams of declared size (an HTTP body with Content-Length) are matched as they arrive and
 * spooled only when their head names a container. The verdict must be the one the same bytes get
 * as a Buffer, whatever the chunking: offsets counted from the end, hash and allow-list signatures
 * (which need the size), containers with the infection inside; and the limits (maxFileSize,
 * maxScanSize, maxRecursion, timeout, abort) and the declared size itself still hold.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { type TestContext, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { engineLimitsSchema } from '../../src/config/schema.js';
import { MemoryVerdictCache } from '../../src/engine/cache.js';
import { BuiltinScanner, createBuiltinScanner, loadEngine } from '../../src/engine/index.js';
import { EICAR, mailWithAttachment } from '../helpers/eicar.js';
import { genPattern, instantiate, type Rng, rng } from '../helpers/sigdb.js';
import { buildZip } from '../helpers/zipwriter.js';

/** The bytes of `data` in pieces of random size (1 byte up to 70 KB). */
function pieces(r: Rng, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < data.length; ) {
    const n = r.pick([1, 7, 4096, 65_536, r.int(1, 70_000)]);
    out.push(data.subarray(p, p + n));
    p += n;
  }
  return out;
}

const chunked = (r: Rng, data: Buffer) => Readable.from(pieces(r, data));

/** Signatures the size matters to, and files that hit or just miss them. */
function corpus(r: Rng): { db: Record<string, string>; files: Buffer[] } {
  const ndb: string[] = [];
  const hdb: string[] = [];
  const fp: string[] = [];
  const files: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    const pat = genPattern(r);
    const inst = instantiate(r, pat);
    const size = inst.length + r.int(0, 200_000);
    const start = r.int(0, size - inst.length);
    const kind = r.pick(['*', 'n', 'EOF-n', 'EOF-n,s'] as const);
    const offset =
      kind === '*'
        ? '*'
        : kind === 'n'
          ? `${start}`
          : kind === 'EOF-n'
            ? `EOF-${size - start}`
            : `EOF-${size - start + 3},6`;
    ndb.push(`Gen.Stream.${i}:0:${offset}:${pat.hex}`);
    const hit = r.bytes(size);
    inst.copy(hit, start);
    // One byte off: misses every anchored offset.
    const miss = r.bytes(size + 1);
    inst.copy(miss, Math.min(start + 1, size + 1 - inst.length));
    files.push(hit, miss);
    if (i % 10 === 0) fp.push(`${createHash('md5').update(hit).digest('hex')}:${hit.length}:Allowed.${i}`);
  }
  for (let i = 0; i < 10; i++) {
    const data = r.bytes(r.int(1, 90_000));
    const size = i % 3 === 0 ? data.length + 1 : data.length;
    hdb.push(`${createHash('md5').update(data).digest('hex')}:${size}:Gen.Hash.${i}`);
    files.push(data);
  }
  return { db: { 'gen.ndb': ndb.join('\n'), 'gen.hdb': hdb.join('\n'), 'gen.fp': fp.join('\n') }, files };
}

/** A scanner loaded with corpus(r)'s signatures, and its files. */
async function corpusScanner(t: TestContext, seed: number) {
  const dir = mkdtempSync(join(tmpdir(), 'sg-streamed-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = rng(seed);
  const { db, files } = corpus(r);
  const paths = Object.entries(db).map(([name, text]) => {
    writeFileSync(join(dir, name), `${text}\n`);
    return join(dir, name);
  });
  return { r, files, scanner: await createBuiltinScanner({ signatures: paths, cacheEntries: 0 }) };
}

test('a stream of declared size gets the Buffer verdict, however it is cut', async (t) => {
  const { r, files, scanner } = await corpusScanner(t, 20261123);
  const filler = Buffer.alloc(300_000, 'all work and no play ');
  const containers = [
    gzipSync(Buffer.concat([filler, EICAR, filler])),
    buildZip([
      { name: 'a.txt', data: filler },
      { name: 'dir/eicar.com', data: EICAR },
    ]),
    mailWithAttachment(EICAR),
    gzipSync(filler),
  ];
  let infected = 0;
  for (const data of [...files, ...containers]) {
    const whole = await scanner.scan(data, { name: 'obj' });
    for (let k = 0; k < 2; k++) {
      const v = await scanner.scan(chunked(r, data), { name: 'obj', size: data.length });
      assert.deepEqual(v, whole);
      // No size declared: the EOF-n signatures in a pass over the spool's last bytes at the end.
      assert.deepEqual(await scanner.scan(chunked(r, data), { name: 'obj' }), whole, 'without the size');
    }
    if (whole.status === 'infected') infected++;
  }
  // The corpus is not trivially clean (or trivially infected).
  assert.ok(infected > 20 && infected < files.length, `${infected} infected`);
});

test('decideEarly: the same verdict, however cut, and an infected stream is answered before its end', async (t) => {
  const { r, files, scanner } = await corpusScanner(t, 20261124);
  // Allow-listed (.fp) and hash-matched files included: no early answer may contradict the end's.
  for (const data of files) {
    const whole = await scanner.scan(data, { name: 'obj' });
    const early = await scanner.scan(chunked(r, data), { name: 'obj', size: data.length, decideEarly: true });
    assert.equal(early.status, whole.status);
    const noSize = await scanner.scan(chunked(r, data), { name: 'obj', decideEarly: true });
    assert.equal(noSize.status, whole.status, 'without the size');
  }

  const builtin = await createBuiltinScanner({ cacheEntries: 0 });
  for (const decideEarly of [true, false]) {
    const input = new PassThrough();
    let answered = false;
    const verdict = builtin.scan(input, { name: 'big', size: 50_000_000, decideEarly }).finally(() => {
      answered = true;
    });
    input.write(Buffer.alloc(200_000, 'a'));
    input.write(EICAR);
    input.write(Buffer.alloc(200_000, 'b'));
    // Every byte written so far has been matched once the stream has been read dry.
    await new Promise<void>((resolve) => {
      const check = () => (input.readableLength === 0 ? resolve() : setImmediate(check));
      check();
    });
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(answered, decideEarly, `answered before the end with decideEarly=${decideEarly}`);
    if (decideEarly) {
      assert.deepEqual(await verdict, {
        status: 'infected',
        signature: 'Eicar-Signature',
        location: ['big'],
      });
      assert.ok(input.destroyed, 'the engine stopped reading');
    } else {
      input.destroy();
      await verdict;
    }
  }
});

test('without a declared size: streamed alike, with a pass over the last bytes when signatures count from the end', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-streamed-nosize-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = rng(99);
  const hex = (x: string) => Buffer.from(x, 'latin1').toString('hex');
  const hashed = r.bytes(5000);
  const allowed = Buffer.concat([r.bytes(3000), Buffer.from('..ABCDEF..'), r.bytes(100)]);
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const db: Record<string, string> = {
    'a.ndb': `Bad:0:*:414243444546\nAt10:0:10:${hex('QQQQ')}`,
    'a.ldb': [
      `Full;Engine:81-255,Target:0;0;${hex('evil')}::f`,
      `Size;Engine:51-255,Target:0,FileSize:5000-6000;0;${hex('ZZZZ')}`,
      `Wide;Engine:81-255,Target:0;0;${hex('trojan')}::w`,
    ].join('\n'),
    'a.hdb': `${md5(hashed)}:${hashed.length}:Hashed.Md5`,
    'a.hsb': `${sha256(hashed.subarray(1))}:*:Hashed.AnySize:73`,
    'a.fp': `${md5(allowed)}:${allowed.length}:Known.Clean`,
  };
  const paths = Object.entries(db).map(([name, text]) => {
    writeFileSync(join(dir, name), `${text}\n`);
    return join(dir, name);
  });
  const scanner = await createBuiltinScanner({ signatures: paths, cacheEntries: 0 });
  const eofDb = join(dir, 'eof.ndb');
  writeFileSync(eofDb, `AtEnd:0:EOF-4:${hex('TAIL')}\n`);
  const eofScanner = await createBuiltinScanner({ signatures: [eofDb], cacheEntries: 0 });
  assert.equal((await loadEngine(paths)).matcher.sizeFree, true);
  const eofEngine = await loadEngine([eofDb]);
  assert.equal(eofEngine.matcher.sizeFree, false);
  // Without the size, the EOF-n signatures wait for a pass over the last bytes: end() refuses to skip it.
  assert.throws(() => eofEngine.matcher.session({}).end(), /EOF-n pass/);
  const noise = () => r.bytes(r.int(0, 9000));
  const files = [
    hashed,
    hashed.subarray(1),
    allowed,
    Buffer.concat([r.bytes(10), Buffer.from('QQQQ'), r.bytes(100)]),
    Buffer.concat([r.bytes(11), Buffer.from('QQQQ'), r.bytes(100)]),
    Buffer.concat([noise(), Buffer.from(' evil')]),
    Buffer.concat([noise(), Buffer.from('devil')]),
    Buffer.concat([noise(), Buffer.from(' evil '), noise()]),
    Buffer.concat([Buffer.alloc(4000, 0x20), Buffer.from('ZZZZ'), Buffer.alloc(1500, 0x20)]),
    Buffer.concat([Buffer.alloc(4000, 0x20), Buffer.from('ZZZZ'), Buffer.alloc(2500, 0x20)]),
    Buffer.concat([noise(), Buffer.from('trojan', 'utf16le')]),
    Buffer.concat([noise(), Buffer.from('TAIL')]),
    Buffer.concat([noise(), Buffer.from('TAIL'), r.bytes(1)]),
    gzipSync(Buffer.concat([Buffer.alloc(100_000, 'text '), EICAR])),
  ];
  let infected = 0;
  for (const data of files) {
    for (const s of [scanner, eofScanner]) {
      const whole = await s.scan(data, { name: 'obj' });
      if (whole.status === 'infected') infected++;
      for (let k = 0; k < 2; k++) assert.deepEqual(await s.scan(chunked(r, data), { name: 'obj' }), whole);
    }
  }
  assert.ok(infected >= 10, `${infected} infected`);

  const small = await createBuiltinScanner({ cacheEntries: 0, limits: { maxFileSize: 100_000 } });
  const big = r.bytes(200_000);
  const over = await small.scan(chunked(r, big), { name: 'big' });
  assert.ok(over.status === 'infected' && over.signature === 'Heuristics.Limits.Exceeded.MaxFileSize');
  const scanSize = await createBuiltinScanner({ cacheEntries: 0, limits: { maxScanSize: 100_000 } });
  const v = await scanSize.scan(chunked(r, big), { name: 'big' });
  assert.ok(v.status === 'infected' && v.signature === 'Heuristics.Limits.Exceeded.MaxScanSize');
});

test('a plain stream is never spooled; a container is, and its verdict is cached by SHA-256', async (t) => {
  const spoolDir = mkdtempSync(join(tmpdir(), 'sg-streamed-spool-'));
  t.after(() => rmSync(spoolDir, { recursive: true, force: true }));
  const cache = new MemoryVerdictCache(100);
  // A spool past 1 KiB goes to a temp file, so the folder shows whether the scanner spools.
  const limits = engineLimitsSchema.parse({});
  const scanner = new BuiltinScanner(await loadEngine([]), { limits, cache, spoolDir, spoolMemory: 1024 });
  const r = rng(7);
  const plain = r.bytes(3 * 1024 * 1024);
  // Creating (or removing) a temp file would change the folder's modification time.
  const before = statSync(spoolDir, { bigint: true }).mtimeNs;
  assert.deepEqual(await scanner.scan(chunked(r, plain), { name: 'p', size: plain.length }), {
    status: 'clean',
  });
  assert.equal(
    statSync(spoolDir, { bigint: true }).mtimeNs,
    before,
    'nothing written to disk for a plain object',
  );
  assert.equal(cache.stats().size, 0, 'a plain stream is not hashed, so not cached');

  const zip = buildZip([
    { name: 'filler.bin', data: r.bytes(5000) },
    { name: 'inner/eicar.com', data: EICAR },
  ]);
  // Before its last byte, the stream waits until the spool's temp file shows up.
  let spooled = false;
  const watched = Readable.from(
    (async function* () {
      const all = pieces(r, zip.subarray(0, zip.length - 1));
      yield* all;
      for (let i = 0; i < 500 && !spooled; i++) {
        spooled = readdirSync(spoolDir).length > 0;
        if (!spooled) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      yield zip.subarray(zip.length - 1);
    })(),
  );
  const first = await scanner.scan(watched, { name: 'z.zip', size: zip.length });
  assert.deepEqual(first, {
    status: 'infected',
    signature: 'Eicar-Signature',
    location: ['z.zip', 'inner/eicar.com'],
  });
  assert.ok(spooled, 'the container was spooled');
  const version = scanner.cacheKey();
  const sha = createHash('sha256').update(zip).digest('hex');
  assert.equal((await cache.get(version, sha))?.status, 'infected');
  const hits = cache.stats().hits;
  const again = await scanner.scan(chunked(r, zip), { name: 'again.zip', size: zip.length });
  assert.deepEqual(again, { ...first, location: ['again.zip', 'inner/eicar.com'] });
  assert.equal(cache.stats().hits, hits + 1, 'the second copy is answered from the cache');
  assert.deepEqual(readdirSync(spoolDir), [], 'spooled containers are removed');
});

test('limits and the declared size hold for streams', async () => {
  const r = rng(11);
  const data = r.bytes(200_000);
  const small = await createBuiltinScanner({ cacheEntries: 0, limits: { maxFileSize: 100_000 } });
  const over = await small.scan(chunked(r, data), { name: 'big', size: data.length });
  assert.ok(over.status === 'infected' && over.signature === 'Heuristics.Limits.Exceeded.MaxFileSize');

  const scanSize = await createBuiltinScanner({
    cacheEntries: 0,
    limits: { maxFileSize: 1_000_000, maxScanSize: 100_000 },
  });
  const v = await scanSize.scan(chunked(r, data), { name: 'big', size: data.length });
  assert.ok(v.status === 'infected' && v.signature === 'Heuristics.Limits.Exceeded.MaxScanSize');
  // maxScanSize counts what containers hold too.
  const gz = gzipSync(Buffer.alloc(150_000, 1));
  const nested = await scanSize.scan(chunked(r, gz), { name: 'z.gz', size: gz.length });
  assert.ok(nested.status === 'infected' && nested.signature === 'Heuristics.Limits.Exceeded.MaxScanSize');

  const flat = await createBuiltinScanner({ cacheEntries: 0, limits: { maxRecursion: 0 } });
  const rec = await flat.scan(chunked(r, gz), { name: 'z.gz', size: gz.length });
  assert.ok(rec.status === 'infected' && rec.signature === 'Heuristics.Limits.Exceeded.MaxRecursion');

  const scanner = await createBuiltinScanner({ cacheEntries: 0 });
  for (const declared of [data.length - 1, data.length + 1]) {
    const wrong = await scanner.scan(chunked(r, data), { name: 'x', size: declared });
    assert.equal(wrong.status, 'error');
    assert.equal(wrong.status === 'error' && wrong.code, 'ERR_SCAN_SIZE');
  }
});

test('a stalled stream ends at the timeout, or when the caller aborts', async (t) => {
  // The scan timeout's timer does not keep a process alive (a server has its sockets for that).
  const alive = setInterval(() => {}, 1000);
  t.after(() => clearInterval(alive));
  const quick = await createBuiltinScanner({ cacheEntries: 0, limits: { timeout: 300 } });
  const stalled = new PassThrough();
  stalled.write(Buffer.alloc(10_000, 1));
  const v = await quick.scan(stalled, { name: 'slow', size: 1_000_000 });
  assert.ok(v.status === 'infected' && v.signature === 'Heuristics.Limits.Exceeded.MaxScanTime');

  const scanner = await createBuiltinScanner({ cacheEntries: 0 });
  const ac = new AbortController();
  const held = new PassThrough();
  held.write(Buffer.alloc(10_000, 1));
  setTimeout(() => ac.abort(), 100);
  const aborted = await scanner.scan(held, { name: 'gone', size: 1_000_000, signal: ac.signal });
  assert.equal(aborted.status === 'error' && aborted.code, 'ERR_SCAN_ABORTED');
});
