/**
 * Property tests: arbitrary bytes and mutated valid archives never make an archive unpacker throw
 * anything but UnpackError/UnpackLimitError, and always terminate (each run is bounded by the test
 * timeout; limits are small so hostile declared sizes stay cheap).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { archiveUnpackers } from '../../src/engine/unpack/archives.js';
import type { Unpacker } from '../../src/engine/unpack/types.js';
import { UnpackError, UnpackLimitError } from '../../src/errors.js';
import { which } from '../helpers/peers.js';
import { buildZip } from '../helpers/zipwriter.js';
import { ctx, drain } from './unpack-archives-helpers.js';

const small = () => ctx({ maxFileSize: 1 << 20, maxFiles: 50, maxCompressionRatio: 200 });

async function survives(u: Unpacker, buf: Buffer): Promise<void> {
  try {
    await drain(u, buf, small());
  } catch (e) {
    if (e instanceof UnpackError || e instanceof UnpackLimitError) return;
    throw e;
  }
}

const text = Buffer.from('The quick brown fox jumps over the lazy dog. '.repeat(200));

/** Valid seeds per type, built in-process or by real tools when present. */
function seeds(): Record<string, Buffer[]> {
  const out: Record<string, Buffer[]> = {
    zip: [
      buildZip([
        { name: 'a.txt', data: text },
        { name: 'b.bin', data: Buffer.from([1, 2, 3]), method: 0 },
      ]),
    ],
    gzip: [gzipSync(text)],
    bzip2: [],
    tar: [],
    cpio: [],
    cab: [],
    szdd: [],
    '7z': [],
    arj: [],
  };
  const run = (cmd: string, args: string[], input: Buffer): Buffer | null => {
    const p = which(cmd);
    return p ? execFileSync(p, args, { input, stdio: ['pipe', 'pipe', 'ignore'] }) : null;
  };
  const bz = run('bzip2', ['-c'], text);
  if (bz) out.bzip2!.push(bz);
  const z9 = run('7z', ['a', '-bd', '-tzip', '-mm=Deflate64', '-si', '-so', 'x.zip'], text);
  if (z9 && z9.length > 0) out.zip!.push(z9); // deflate64, zip64 sizes, data descriptor
  const zb = run('zip', ['-q', '-Z', 'bzip2', '-', '-'], text);
  if (zb) out.zip!.push(zb); // bzip2 method
  const testfiles: [string, string][] = [
    ['zip', 'clam.impl.zip'], // implode
    ['zip', 'clam.d64.zip'], // deflate64 from another writer
    ['cab', 'clam.cab'],
    ['szdd', 'clam.exe.szdd'],
    ['7z', 'clam.7z'],
    ['arj', 'clam.arj'],
  ];
  for (const [type, f] of testfiles) {
    const path = `/usr/share/clamav-testfiles/${f}`;
    if (existsSync(path)) out[type]!.push(readFileSync(path));
  }
  const gcab = which('gcab');
  if (gcab) {
    const dir = mkdtempSync(join(tmpdir(), 'scangate-props-'));
    try {
      writeFileSync(join(dir, 'a.txt'), text);
      execFileSync(gcab, ['-cz', 'm.cab', 'a.txt'], { cwd: dir, stdio: 'ignore' });
      out.cab!.push(readFileSync(join(dir, 'm.cab'))); // MSZIP
      const arj = which('arj');
      if (arj) {
        for (const m of ['1', '4']) {
          execFileSync(arj, ['a', `-m${m}`, '-y', `m${m}.arj`, 'a.txt'], { cwd: dir, stdio: 'ignore' });
          out.arj!.push(readFileSync(join(dir, `m${m}.arj`)));
        }
      }
      const sz = which('7z');
      if (sz) {
        execFileSync(sz, ['a', '-bd', '-mhc=off', 'p.7z', 'a.txt'], { cwd: dir, stdio: 'ignore' });
        out['7z']!.push(readFileSync(join(dir, 'p.7z'))); // plain header, LZMA2
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  // tar and cpio headers written by hand (the layouts are tested against real tools elsewhere)
  const h = Buffer.alloc(512);
  h.write('file.txt', 0);
  h.write('0000644\0', 100);
  h.write(`${text.length.toString(8).padStart(11, '0')}\0`, 124);
  h.write('ustar\x0000', 257);
  h[156] = 0x30;
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const pad = Buffer.alloc((512 - (text.length % 512)) % 512);
  out.tar!.push(Buffer.concat([h, text, pad, Buffer.alloc(1024)]));
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  const newc = (name: string, data: Buffer, mode: number): Buffer => {
    const nm = Buffer.from(`${name}\0`);
    const head = Buffer.from(
      `070701${hex(1)}${hex(mode)}${hex(0)}${hex(0)}${hex(1)}${hex(0)}${hex(data.length)}${hex(0)}${hex(0)}${hex(0)}${hex(0)}${hex(nm.length)}${hex(0)}`,
    );
    const a = Buffer.concat([head, nm]);
    return Buffer.concat([
      a,
      Buffer.alloc((4 - (a.length % 4)) % 4),
      data,
      Buffer.alloc((4 - (data.length % 4)) % 4),
    ]);
  };
  out.cpio!.push(Buffer.concat([newc('f.txt', text, 0o100644), newc('TRAILER!!!', Buffer.alloc(0), 0)]));
  return out;
}

const SEEDS = seeds();

describe('archive unpackers survive hostile input', { timeout: 120_000 }, () => {
  for (const u of archiveUnpackers) {
    it(`${u.type}: arbitrary bytes`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
          await survives(u, Buffer.from(bytes));
        }),
        { numRuns: 300 },
      );
    });
    it(`${u.type}: arbitrary bytes behind a valid magic`, async () => {
      const seed = SEEDS[u.type]?.[0];
      if (!seed) return;
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 0, max: 600 }),
          fc.uint8Array({ maxLength: 2048 }),
          async (keep, bytes) => {
            await survives(u, Buffer.concat([seed.subarray(0, keep), Buffer.from(bytes)]));
          },
        ),
        { numRuns: 300 },
      );
    });
    it(`${u.type}: mutated valid archives (byte flips, truncation)`, async () => {
      const all = SEEDS[u.type] ?? [];
      assert.ok(all.length > 0, `a seed archive for ${u.type}`);
      for (const seed of all) {
        // the unmutated seed unpacks cleanly
        const got = await drain(u, seed, small());
        assert.ok(got.length > 0, `${u.type} seed yields entries`);
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.tuple(fc.nat({ max: seed.length - 1 }), fc.integer({ min: 0, max: 255 })), {
              minLength: 1,
              maxLength: 8,
            }),
            fc.nat({ max: seed.length }),
            async (flips, cut) => {
              const m = Buffer.from(seed);
              for (const [i, v] of flips) m[i] = v;
              await survives(u, m);
              await survives(u, m.subarray(0, cut));
            },
          ),
          { numRuns: 300 },
        );
      }
    });
  }
});
