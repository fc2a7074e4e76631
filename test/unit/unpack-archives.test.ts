import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { crc32, createDeflateRaw, gzipSync, constants as zconst } from 'node:zlib';
import { BufferSource, FileSource } from '../../src/engine/source.js';
import { archiveUnpackers } from '../../src/engine/unpack/archives.js';
import { arjUnpacker } from '../../src/engine/unpack/arj.js';
import { bzip2Unpacker } from '../../src/engine/unpack/bzip2.js';
import { cabUnpacker } from '../../src/engine/unpack/cab.js';
import { cpioUnpacker } from '../../src/engine/unpack/cpio.js';
import { gzipUnpacker } from '../../src/engine/unpack/gzip.js';
import { sevenZipUnpacker } from '../../src/engine/unpack/sevenzip.js';
import { szddUnpacker } from '../../src/engine/unpack/szdd.js';
import { tarUnpacker } from '../../src/engine/unpack/tar.js';
import type { Entry, Unpacker } from '../../src/engine/unpack/types.js';
import { zipUnpacker } from '../../src/engine/unpack/zip.js';
import { UnpackError, UnpackLimitError } from '../../src/errors.js';
import { peer } from '../helpers/peers.js';
import { buildZip } from '../helpers/zipwriter.js';
import { ctx, drain, inTemp, read, sh, TESTFILES } from './unpack-archives-helpers.js';

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const CLAM = join(TESTFILES, 'clam.exe');
const haveTestfiles = existsSync(CLAM);

function detect(head: Buffer, size = head.length): Unpacker | undefined {
  return archiveUnpackers.find((u) => u.detect(head.subarray(0, 4096), size));
}

/** Fully unpacks nested containers with the archive unpackers; returns every leaf's bytes. */
async function leaves(buf: Buffer, depth = 0): Promise<Buffer[]> {
  const u = detect(buf);
  if (!u || depth > 20) return [buf];
  const out: Buffer[] = [];
  for (const e of await drain(u, buf)) out.push(...(await leaves(e.data, depth + 1)));
  return out;
}

describe('clamav-testfiles: every archive yields clam.exe byte for byte', () => {
  const files: [string, string][] = [
    ['clam.zip', 'zip'],
    ['clam.bz2.zip', 'zip'],
    ['clam.d64.zip', 'zip'],
    ['clam.impl.zip', 'zip'],
    ['clam.tar.gz', 'gzip'],
    ['clam.exe.bz2', 'bzip2'],
    ['clam.bin-le.cpio', 'cpio'],
    ['clam.bin-be.cpio', 'cpio'],
    ['clam.odc.cpio', 'cpio'],
    ['clam.newc.cpio', 'cpio'],
    ['clam_cache_emax.tgz', 'gzip'],
    ['clam.exe.szdd', 'szdd'],
    ['clam.cab', 'cab'],
    ['clam.7z', '7z'],
    ['clam.arj', 'arj'],
  ];
  for (const [file, type] of files) {
    it(file, async (t) => {
      if (!haveTestfiles) return t.skip('clamav-testfiles not installed');
      const want = md5(readFileSync(CLAM));
      const buf = readFileSync(join(TESTFILES, file));
      assert.equal(detect(buf)?.type, type);
      const found = (await leaves(buf)).map(md5);
      assert.ok(found.includes(want), `${file}: clam.exe not among ${found.join(',')}`);
    });
  }
  it('clam.zip through FileSource names the entry', async (t) => {
    if (!haveTestfiles) return t.skip('clamav-testfiles not installed');
    const src = await FileSource.open(join(TESTFILES, 'clam.zip'));
    try {
      const got = await drain(zipUnpacker, src);
      assert.deepEqual(
        got.map((e) => [e.name, md5(e.data)]),
        [['clam.exe', md5(readFileSync(CLAM))]],
      );
    } finally {
      await src.close();
    }
  });
});

describe('zip built by real tools', () => {
  const payload = Buffer.concat([randomBytes(50_000), Buffer.alloc(200_000, 'abc')]);
  it('deflate and stored entries, directories skipped, names kept', async (t) => {
    const zip = peer(t, 'zip');
    if (!zip) return;
    await inTemp(async (dir) => {
      mkdirSync(join(dir, 'sub'));
      writeFileSync(join(dir, 'sub', 'a.bin'), payload);
      writeFileSync(join(dir, 'b.txt'), 'hello');
      sh(dir, zip, ['-q', '-r', 'out.zip', 'sub', 'b.txt']);
      sh(dir, zip, ['-q', '-0', 'stored.zip', 'b.txt']);
      const got = await drain(zipUnpacker, read(dir, 'out.zip'));
      assert.deepEqual(got.map((e) => e.name).sort(), ['b.txt', 'sub/a.bin']);
      assert.ok(got.find((e) => e.name === 'sub/a.bin')!.data.equals(payload));
      const stored = await drain(zipUnpacker, read(dir, 'stored.zip'));
      assert.equal(stored[0]!.data.toString(), 'hello');
    });
  });
  it('bzip2 method (zip -Z bzip2) and zip64 (zip -fz)', async (t) => {
    const zip = peer(t, 'zip');
    if (!zip) return;
    await inTemp(async (dir) => {
      writeFileSync(join(dir, 'a.bin'), payload);
      sh(dir, zip, ['-q', '-Z', 'bzip2', 'bz.zip', 'a.bin']);
      sh(dir, zip, ['-q', '-fz', 'z64.zip', 'a.bin']);
      for (const f of ['bz.zip', 'z64.zip']) {
        const got = await drain(zipUnpacker, read(dir, f));
        assert.equal(got.length, 1, f);
        assert.ok(got[0]!.data.equals(payload), f);
      }
    });
  });
  it('deflate64 from 7z -mm=Deflate64', async (t) => {
    const sz = peer(t, '7z', 'p7zip-full');
    if (!sz) return;
    await inTemp(async (dir) => {
      const r50 = randomBytes(50_000);
      // a random block repeated at distance 50 000: only a 64 KiB window can match it
      const big = Buffer.concat([payload, r50, r50, r50]);
      writeFileSync(join(dir, 'a.bin'), big);
      sh(dir, sz, ['a', '-bd', '-tzip', '-mm=Deflate64', 'd64.zip', 'a.bin']);
      const got = await drain(zipUnpacker, read(dir, 'd64.zip'));
      assert.ok(got[0]!.data.equals(big));
    });
  });
  it('streamed zip with data descriptors, central directory cut off: local-header walk', async (t) => {
    const zip = peer(t, 'zip');
    if (!zip) return;
    await inTemp(async (dir) => {
      const z = sh(dir, zip, ['-q', '-', '-'], payload); // from stdin: sizes only in the data descriptor
      const whole = await drain(zipUnpacker, z);
      assert.ok(whole[0]!.data.equals(payload));
      const cd = z.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
      const cut = z.subarray(0, cd);
      const got = await drain(zipUnpacker, cut);
      assert.equal(got.length, 1);
      assert.ok(got[0]!.data.equals(payload));
    });
  });
  it('encrypted entries are listed with encrypted: true; open() throws ERR_ENCRYPTED', async (t) => {
    const zip = peer(t, 'zip');
    if (!zip) return;
    await inTemp(async (dir) => {
      writeFileSync(join(dir, 'a.txt'), 'secret');
      sh(dir, zip, ['-q', '-P', 'pw', 'enc.zip', 'a.txt']);
      const entries: Entry[] = [];
      for await (const e of zipUnpacker.entries(new BufferSource(read(dir, 'enc.zip')), ctx()))
        entries.push(e);
      assert.equal(entries.length, 1);
      assert.equal(entries[0]!.encrypted, true);
      await assert.rejects(
        async () => {
          for await (const _ of entries[0]!.open());
        },
        (e: unknown) => e instanceof UnpackError && e.code === 'ERR_ENCRYPTED',
      );
    });
  });
  it('prepended data (self-extractor style) shifts offsets and still unpacks', async () => {
    const z = buildZip([{ name: 'x.txt', data: Buffer.from('shifted') }]);
    const got = await drain(zipUnpacker, Buffer.concat([randomBytes(1000), z]));
    assert.equal(got[0]!.data.toString(), 'shifted');
  });
});

describe('gzip, bzip2, tar, cpio built by real tools', () => {
  const payload = Buffer.concat([randomBytes(30_000), Buffer.alloc(300_000, 'xyz'), randomBytes(100)]);
  it('gzip keeps the FNAME and concatenates members', async (t) => {
    const gzip = peer(t, 'gzip');
    if (!gzip) return;
    await inTemp(async (dir) => {
      writeFileSync(join(dir, 'file.bin'), payload);
      sh(dir, gzip, ['-k', 'file.bin']);
      const got = await drain(gzipUnpacker, read(dir, 'file.bin.gz'));
      assert.equal(got[0]!.name, 'file.bin');
      assert.ok(got[0]!.data.equals(payload));
      // trailing garbage after the last member is ignored (gzip(1) warns and keeps the data)
      const junk = Buffer.concat([gzipSync(Buffer.from('payload')), Buffer.from('garbage after the member')]);
      assert.equal((await drain(gzipUnpacker, junk))[0]!.data.toString(), 'payload');
      const two = Buffer.concat([gzipSync(Buffer.from('one ')), gzipSync(Buffer.from('two'))]);
      const multi = await drain(gzipUnpacker, two);
      assert.equal(multi[0]!.name, '');
      assert.equal(multi[0]!.data.toString(), 'one two');
    });
  });
  it('bzip2 -1 and -9, and two concatenated streams', async (t) => {
    const bzip2 = peer(t, 'bzip2');
    if (!bzip2) return;
    await inTemp(async (dir) => {
      const big = Buffer.concat([payload, payload.subarray(0, 200_000), randomBytes(500_000), payload]);
      for (const level of ['-1', '-9']) {
        const bz = sh(dir, bzip2, ['-c', level], big);
        const got = await drain(bzip2Unpacker, bz);
        assert.ok(got[0]!.data.equals(big), level);
      }
      const a = sh(dir, bzip2, ['-c'], Buffer.from('first '));
      const b = sh(dir, bzip2, ['-c'], Buffer.from('second'));
      const got = await drain(bzip2Unpacker, Buffer.concat([a, b]));
      assert.equal(got[0]!.data.toString(), 'first second');
    });
  });
  it('bzip2 throughput is reported (20 MB of mixed data)', async (t) => {
    const bzip2 = peer(t, 'bzip2');
    if (!bzip2) return;
    const chunks: Buffer[] = [];
    for (let i = 0; i < 40; i++)
      chunks.push(randomBytes(100_000), Buffer.alloc(400_000, `line ${i} of text\n`));
    const data = Buffer.concat(chunks);
    const bz = inTemp((dir) => sh(dir, bzip2, ['-c', '-9'], data));
    const t0 = process.hrtime.bigint();
    const got = await drain(bzip2Unpacker, bz);
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    assert.ok(got[0]!.data.equals(data));
    t.diagnostic(`bzip2 decode: ${(data.length / 1e6 / sec).toFixed(1)} MB/s output`);
  });
  it('tar: ustar, GNU long names, pax long names, v7 without magic', async (t) => {
    const tar = peer(t, 'tar');
    if (!tar) return;
    await inTemp(async (dir) => {
      const long = `${'d'.repeat(120)}/${'n'.repeat(150)}.bin`;
      mkdirSync(join(dir, 'd'.repeat(120)));
      writeFileSync(join(dir, long), payload);
      writeFileSync(join(dir, 'short.txt'), 'short');
      for (const format of ['gnu', 'pax', 'ustar', 'v7']) {
        const names = format === 'gnu' || format === 'pax' ? [long, 'short.txt'] : ['short.txt'];
        sh(dir, tar, [`--format=${format}`, '-cf', `${format}.tar`, ...names]);
        const buf = read(dir, `${format}.tar`);
        assert.equal(detect(buf)?.type, 'tar', format);
        const got = await drain(tarUnpacker, buf);
        assert.deepEqual(
          got.map((e) => e.name),
          names,
          format,
        );
        if (names.length === 2) assert.ok(got[0]!.data.equals(payload), format);
        assert.equal(got.at(-1)!.data.toString(), 'short');
      }
    });
  });
  it('cpio -H bin, odc, newc, crc', async (t) => {
    const cpio = peer(t, 'cpio');
    if (!cpio) return;
    await inTemp(async (dir) => {
      writeFileSync(join(dir, 'odd.bin'), payload.subarray(0, 12_345));
      writeFileSync(join(dir, 'b.txt'), 'bee');
      for (const format of ['bin', 'odc', 'newc', 'crc']) {
        const buf = sh(dir, cpio, ['-o', '--quiet', '-H', format], Buffer.from('odd.bin\nb.txt\n'));
        assert.equal(detect(buf)?.type, 'cpio', format);
        const got = await drain(cpioUnpacker, buf);
        assert.deepEqual(
          got.map((e) => e.name),
          ['odd.bin', 'b.txt'],
          format,
        );
        assert.ok(got[0]!.data.equals(payload.subarray(0, 12_345)), format);
        assert.equal(got[1]!.data.toString(), 'bee', format);
      }
    });
  });
});

describe('7z built by 7-Zip', () => {
  it('LZMA, LZMA2, copy; solid and non-solid; encrypted files and headers', async (t) => {
    const sz = peer(t, '7z', 'p7zip-full');
    if (!sz) return;
    await inTemp(async (dir) => {
      const r = randomBytes(100_000);
      // ~3 MB that compresses well but stays under the default 1000:1 ratio; spans many LZMA2 chunks
      const txt = Buffer.from(
        Array.from({ length: 100_000 }, (_, i) => `line ${i} ${randomBytes(4).toString('hex')}\n`).join(''),
      );
      writeFileSync(join(dir, 'r.bin'), r);
      writeFileSync(join(dir, 't.txt'), txt);
      writeFileSync(join(dir, 'empty'), '');
      const variants: [string, string[]][] = [
        ['lzma2.7z', ['-m0=LZMA2']],
        ['lzma.7z', ['-m0=LZMA']],
        ['copy.7z', ['-mx0']],
        ['nonsolid.7z', ['-ms=off']],
        ['plainhdr.7z', ['-mhc=off']],
      ];
      for (const [f, opts] of variants) {
        sh(dir, sz, ['a', '-bd', ...opts, f, 'r.bin', 't.txt', 'empty']);
        const buf = read(dir, f);
        assert.equal(detect(buf)?.type, '7z');
        const got = await drain(sevenZipUnpacker, buf);
        assert.deepEqual(
          got.map((e) => e.name),
          ['r.bin', 't.txt'],
          f,
        );
        assert.ok(got[0]!.data.equals(r), f);
        assert.ok(got[1]!.data.equals(txt), f);
      }
      // the second file of a solid folder alone (decoder skips the first)
      const entries: Entry[] = [];
      for await (const e of sevenZipUnpacker.entries(new BufferSource(read(dir, 'lzma2.7z')), ctx()))
        entries.push(e);
      const parts: Buffer[] = [];
      for await (const c of entries[1]!.open()) parts.push(c);
      assert.ok(Buffer.concat(parts).equals(txt));

      sh(dir, sz, ['a', '-bd', '-pabc', 'enc.7z', 'r.bin']);
      const enc: Entry[] = [];
      for await (const e of sevenZipUnpacker.entries(new BufferSource(read(dir, 'enc.7z')), ctx()))
        enc.push(e);
      assert.equal(enc[0]!.encrypted, true);
      sh(dir, sz, ['a', '-bd', '-pabc', '-mhe=on', 'enchdr.7z', 'r.bin']);
      await assert.rejects(
        drain(sevenZipUnpacker, read(dir, 'enchdr.7z')),
        (e: unknown) => e instanceof UnpackError && e.code === 'ERR_ENCRYPTED',
      );
      // truncated: UnpackError, not a crash
      const lz = read(dir, 'lzma2.7z');
      for (const cut of [10, 100, 50_000, lz.length - 10]) {
        await assert.rejects(drain(sevenZipUnpacker, lz.subarray(0, cut)), UnpackError, `cut ${cut}`);
      }
    });
  });
  it('executables get the x86 BCJ filter chained before LZMA2 (7-Zip default): decoded byte-exact', async (t) => {
    const sz = peer(t, '7z', 'p7zip-full');
    if (!sz) return;
    await inTemp(async (dir) => {
      const exe = readFileSync(process.execPath).subarray(0, 3_000_000); // real x86-64 code, many E8/E9
      writeFileSync(join(dir, 'prog.exe'), exe);
      sh(dir, sz, ['a', '-bd', 'bcj.7z', 'prog.exe']);
      const listing = sh(dir, sz, ['l', '-slt', 'bcj.7z']).toString();
      assert.match(listing, /BCJ/);
      const got = await drain(sevenZipUnpacker, read(dir, 'bcj.7z'));
      assert.ok(got[0]!.data.equals(exe));
    });
  });
  it('an LZMA2 7z bomb stops at MaxCompressionRatio', async (t) => {
    const sz = peer(t, '7z', 'p7zip-full');
    if (!sz) return;
    await inTemp(async (dir) => {
      writeFileSync(join(dir, 'zeros'), Buffer.alloc(64 << 20));
      sh(dir, sz, ['a', '-bd', 'bomb.7z', 'zeros']);
      await assert.rejects(
        drain(sevenZipUnpacker, read(dir, 'bomb.7z'), ctx({ maxCompressionRatio: 100 })),
        (e: unknown) => e instanceof UnpackLimitError && e.limit === 'MaxCompressionRatio',
      );
    });
  });
});

describe('arj built by arj', () => {
  it('methods 0 (stored), 1-3 (Huffman blocks), 4 (fastest); garbled entries flagged; truncation', async (t) => {
    const arj = peer(t, 'arj');
    if (!arj) return;
    await inTemp(async (dir) => {
      const r = randomBytes(100_000);
      const txt = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `row ${i} ${i % 7}\n`).join(''));
      writeFileSync(join(dir, 'r.bin'), r);
      writeFileSync(join(dir, 't.txt'), txt);
      for (const m of ['0', '1', '2', '3', '4']) {
        sh(dir, arj, ['a', `-m${m}`, '-y', `m${m}.arj`, 'r.bin', 't.txt']);
        const buf = read(dir, `m${m}.arj`);
        assert.equal(detect(buf)?.type, 'arj', m);
        const got = await drain(arjUnpacker, buf);
        assert.deepEqual(
          got.map((e) => e.name),
          ['r.bin', 't.txt'],
          `method ${m}`,
        );
        assert.ok(got[0]!.data.equals(r), `method ${m}`);
        assert.ok(got[1]!.data.equals(txt), `method ${m}`);
        await assert.rejects(
          drain(arjUnpacker, buf.subarray(0, buf.length - 2000)),
          UnpackError,
          `method ${m} truncated`,
        );
      }
      sh(dir, arj, ['a', '-gsecret', '-y', 'g.arj', 't.txt']);
      const got = await drain(arjUnpacker, read(dir, 'g.arj'));
      assert.equal(got[0]!.encrypted, true);
    });
  });
});

describe('cab and SZDD built by real tools', () => {
  it('gcab: stored and MSZIP folders (files spanning many 32 KiB blocks)', async (t) => {
    const gcab = peer(t, 'gcab');
    if (!gcab) return;
    await inTemp(async (dir) => {
      const r = randomBytes(100_000);
      const txt = Buffer.alloc(300_000, 'hello\n');
      writeFileSync(join(dir, 'r.bin'), r);
      writeFileSync(join(dir, 't.txt'), txt);
      sh(dir, gcab, ['-c', 'stored.cab', 'r.bin', 't.txt']);
      sh(dir, gcab, ['-cz', 'mszip.cab', 'r.bin', 't.txt']);
      for (const f of ['stored.cab', 'mszip.cab']) {
        const buf = read(dir, f);
        assert.equal(detect(buf)?.type, 'cab');
        const got = await drain(cabUnpacker, buf);
        assert.deepEqual(
          got.map((e) => e.name),
          ['r.bin', 't.txt'],
          f,
        );
        assert.ok(got[0]!.data.equals(r), f);
        assert.ok(got[1]!.data.equals(txt), f);
      }
      // reading only the second file skips the first one's blocks
      const entries: Entry[] = [];
      for await (const e of cabUnpacker.entries(new BufferSource(read(dir, 'mszip.cab')), ctx()))
        entries.push(e);
      const parts: Buffer[] = [];
      for await (const c of entries[1]!.open()) parts.push(c);
      assert.ok(Buffer.concat(parts).equals(txt));
    });
  });
  it('mscompress (SZDD) round trip', async (t) => {
    const msc = peer(t, 'mscompress');
    if (!msc) return;
    await inTemp(async (dir) => {
      const data = Buffer.concat([randomBytes(5000), Buffer.alloc(100_000, 'abcabc'), randomBytes(70_000)]);
      writeFileSync(join(dir, 'f.exe'), data);
      sh(dir, msc, ['f.exe']);
      const buf = read(dir, 'f.exe_'); // mscompress appends '_'
      assert.equal(detect(buf)?.type, 'szdd');
      const got = await drain(szddUnpacker, buf);
      assert.ok(got[0]!.data.equals(data));
      await assert.rejects(
        drain(szddUnpacker, buf.subarray(0, 2000)),
        (e: unknown) => e instanceof UnpackError && e.code === 'ERR_SZDD_TRUNCATED',
      );
    });
  });
});

/**
 * A raw deflate stream of `mib` MiB of zeros without compressing 10 GiB: a streaming deflater is
 * sync-flushed after each MiB, so every segment after the first is the same byte-aligned run of
 * distance-1 matches; that segment is repeated and a final empty fixed block (0x03 0x00) closes it.
 */
async function zeroBomb(mib: number): Promise<{ data: Buffer; size: number; crc: number }> {
  const d = createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  d.on('data', (c: Buffer) => out.push(c));
  const step = async (): Promise<Buffer> => {
    d.write(Buffer.alloc(1 << 20));
    await new Promise<void>((r) => d.flush(zconst.Z_SYNC_FLUSH, () => r()));
    const b = Buffer.concat(out);
    out.length = 0;
    return b;
  };
  const first = await step();
  const seg = await step();
  const again = await step();
  d.destroy();
  assert.ok(seg.equals(again), 'flushed segments repeat');
  const parts = [first];
  for (let i = 1; i < mib; i++) parts.push(seg);
  parts.push(Buffer.from([0x03, 0x00]));
  return { data: Buffer.concat(parts), size: (mib * (1 << 20)) >>> 0, crc: 0 };
}

describe('hostile input', () => {
  it('the zero-bomb builder produces a valid stream (checked small)', async () => {
    const b = await zeroBomb(3);
    const got = await drain(
      zipUnpacker,
      buildZip([{ name: 'z', deflated: { ...b, crc: crc32(Buffer.alloc(b.size)) } }]),
      ctx({ maxCompressionRatio: 1e6 }),
    );
    assert.equal(got[0]!.data.length, 3 << 20);
    assert.ok(got[0]!.data.every((x) => x === 0));
  });
  it('10 GiB zip bomb: MaxCompressionRatio quickly, memory bounded', async () => {
    const b = await zeroBomb(10 * 1024);
    const z = buildZip([{ name: 'bomb.bin', deflated: b }]);
    const rss0 = process.memoryUsage().rss;
    const t0 = Date.now();
    await assert.rejects(
      drain(zipUnpacker, z, ctx({ maxFileSize: 20 * 2 ** 30, maxCompressionRatio: 100 })),
      (e: unknown) => e instanceof UnpackLimitError && e.limit === 'MaxCompressionRatio',
    );
    assert.ok(Date.now() - t0 < 5000);
    assert.ok(process.memoryUsage().rss - rss0 < 200 * 1024 * 1024);
  });
  it('10 GiB zip bomb under a permissive ratio stops at MaxFileSize without buffering', async () => {
    const z = buildZip([{ name: 'bomb.bin', deflated: await zeroBomb(10 * 1024) }]);
    let seen = 0;
    let maxChunk = 0;
    await assert.rejects(
      (async () => {
        for await (const e of zipUnpacker.entries(
          new BufferSource(z),
          ctx({ maxFileSize: 64 << 20, maxCompressionRatio: 1e9 }),
        )) {
          for await (const c of e.open()) {
            seen += c.length;
            maxChunk = Math.max(maxChunk, c.length);
          }
        }
      })(),
      (e: unknown) => e instanceof UnpackLimitError && e.limit === 'MaxFileSize',
    );
    assert.equal(seen, 64 << 20);
    assert.ok(maxChunk <= 64 * 1024);
  });
  it('gzip bomb and bzip2 bomb hit MaxCompressionRatio', async (t) => {
    const big = Buffer.alloc(40 << 20);
    await assert.rejects(
      drain(gzipUnpacker, gzipSync(big), ctx({ maxCompressionRatio: 100 })),
      (e: unknown) => e instanceof UnpackLimitError && e.limit === 'MaxCompressionRatio',
    );
    const bzip2 = peer(t, 'bzip2');
    if (!bzip2) return;
    const bz = inTemp((dir) => sh(dir, bzip2, ['-c'], big));
    await assert.rejects(
      drain(bzip2Unpacker, bz, ctx({ maxCompressionRatio: 100 })),
      (e: unknown) => e instanceof UnpackLimitError && e.limit === 'MaxCompressionRatio',
    );
  });
  it('MaxFiles: one entry past the limit throws', async () => {
    const z = buildZip(Array.from({ length: 6 }, (_, i) => ({ name: `f${i}`, data: Buffer.from(`${i}`) })));
    await assert.rejects(
      drain(zipUnpacker, z, ctx({ maxFiles: 5 })),
      (e: unknown) => e instanceof UnpackLimitError && e.limit === 'MaxFiles',
    );
    assert.equal((await drain(zipUnpacker, z, ctx({ maxFiles: 6 }))).length, 6);
  });
  it('an aborted signal stops unpacking', async () => {
    const ac = new AbortController();
    ac.abort();
    const z = buildZip([{ name: 'a', data: Buffer.from('a') }]);
    await assert.rejects(drain(zipUnpacker, z, ctx({ signal: ac.signal })), UnpackLimitError);
  });
  it('truncated zip (inside entry data) → UnpackError ERR_ZIP_*', async () => {
    const data = randomBytes(100_000);
    const z = buildZip([{ name: 'a.bin', data }]);
    for (const cut of [40, 5000, 60_000]) {
      await assert.rejects(
        drain(zipUnpacker, z.subarray(0, cut)),
        (e: unknown) => e instanceof UnpackError && /^ERR_ZIP_/.test(e.code),
        `cut ${cut}`,
      );
    }
  });
  it('corrupted gzip → UnpackError ERR_GZIP_CORRUPT', async () => {
    const gz = gzipSync(randomBytes(100_000));
    const bad = Buffer.from(gz);
    for (let i = 20; i < 200; i++) bad[i] = 0xff;
    await assert.rejects(
      drain(gzipUnpacker, bad),
      (e: unknown) => e instanceof UnpackError && e.code === 'ERR_GZIP_CORRUPT',
    );
    await assert.rejects(
      drain(gzipUnpacker, gz.subarray(0, gz.length - 50_000)),
      (e: unknown) => e instanceof UnpackError,
    );
  });
  it('corrupted and truncated bzip2 → UnpackError', async (t) => {
    const bzip2 = peer(t, 'bzip2');
    if (!bzip2) return;
    const bz = inTemp((dir) => sh(dir, bzip2, ['-c'], randomBytes(50_000)));
    await assert.rejects(drain(bzip2Unpacker, bz.subarray(0, bz.length - 100)), UnpackError);
    const bad = Buffer.from(bz);
    bad[5000] ^= 0x55;
    await assert.rejects(drain(bzip2Unpacker, bad), UnpackError);
  });
  it('tar with a huge declared size and a bad checksum', async () => {
    const h = Buffer.alloc(512);
    h.write('big', 0);
    h.write('77777777777', 124); // 8 GiB declared, no data
    h.write('ustar\0', 257);
    h.write('00', 263);
    h[156] = 0x30;
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    await assert.rejects(
      drain(tarUnpacker, Buffer.concat([h, Buffer.alloc(1024, 1)])),
      (e: unknown) => e instanceof UnpackError && e.code === 'ERR_TAR_TRUNCATED',
    );
    const bad = Buffer.from(h);
    bad[0] ^= 1;
    assert.equal(tarUnpacker.detect(bad, 512), false);
  });
});
