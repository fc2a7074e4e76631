/**
 * Matcher throughput: 20,000 body signatures + 200,000 hash signatures over 20 MB of random data,
 * fed in 64 KiB chunks, allMatches on (so the whole object is scanned, no early stop), with the size
 * declared and (`unsized`) without it: a tenth of the body signatures count from the end. When clamscan is
 * installed it scans the same data with the same database, for a ratio measured in the same run.
 * Results also go to bench/results/match.json. Prints DB compile time and MB/s. Run: npx tsx bench/match.ts
 */

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileMatcher } from '../src/engine/match/index.js';
import { SignatureDbBuilder } from '../src/engine/signatures/index.js';
import { which } from '../test/helpers/peers.js';
import { genPattern, rng } from '../test/helpers/sigdb.js';

const BODY = Number(process.env.BODY_SIGS ?? 20_000);
const HASHES = Number(process.env.HASH_SIGS ?? 200_000);
const MB = Number(process.env.DATA_MB ?? 20);
// BENCH_STATIC=1: plain static body signatures only (ClamAV's Boyer-Moore path) instead of every form.

const r = rng(42);
const ndb: string[] = [];
for (let i = 0; i < BODY; i++) {
  // Real database parts carry longer static runs than the differential test's worst cases.
  const p =
    process.env.BENCH_STATIC === '1'
      ? genPattern(r, { lead: [8, 24], parts: 1, elemKinds: ['byte'] })
      : genPattern(r, { lead: process.env.BENCH_SHORT === '1' && i % 100 === 0 ? [2, 3] : [4, 12] });
  const off = i % 10 === 0 ? `EOF-${r.int(100, 5000)}` : '*';
  ndb.push(`Bench.Body.${i}:0:${off}:${p.hex}`);
}
const hdb: string[] = [];
const hsb: string[] = [];
for (let i = 0; i < HASHES; i++) {
  const size = r.int(1, 5_000_000);
  if (i % 2) hdb.push(`${r.bytes(16).toString('hex')}:${size}:Bench.Md5.${i}`);
  else hsb.push(`${r.bytes(32).toString('hex')}:${size}:Bench.Sha256.${i}`);
}

const t0 = performance.now();
const b = new SignatureDbBuilder();
b.addFile('bench.ndb', Buffer.from(ndb.join('\n')));
b.addFile('bench.hdb', Buffer.from(hdb.join('\n')));
b.addFile('bench.hsb', Buffer.from(hsb.join('\n')));
const db = b.build();
const t1 = performance.now();
const m = compileMatcher(db);
const t2 = performance.now();

const data = rng(7).bytes(MB * 1024 * 1024);
// Zero prefix: without it clamscan takes random bytes for UTF-16 text and scans a decoded copy too.
data.fill(0, 0, 16);
const CHUNK = 64 * 1024;
function run(): { ms: number; names: string[] } {
  const s = performance.now();
  const sess = m.session({ size: data.length, allMatches: true });
  for (let off = 0; off < data.length; off += CHUNK) sess.write(data.subarray(off, off + CHUNK));
  const names = sess.end();
  return { ms: performance.now() - s, names };
}
/**
 * The same data as a stream without a declared size (chunked HTTP): every signature but the EOF-n
 * ones (a tenth of this database) is matched as the bytes arrive, the EOF-n ones in a tail pass over
 * the last bytes once the size is known. `tailMs` is the matching left after the last byte arrives;
 * before the tail pass the engine spooled such a stream and matched all of it then (bestScanMs).
 */
function runUnsized(): { ms: number; tailMs: number; names: string[] } {
  const s = performance.now();
  const sess = m.session({ allMatches: true });
  for (let off = 0; off < data.length; off += CHUNK) sess.write(data.subarray(off, off + CHUNK));
  const t = performance.now();
  const from = sess.tailFrom();
  if (from !== null) sess.writeTail(data.subarray(from));
  const names = sess.end();
  const e = performance.now();
  return { ms: e - s, tailMs: e - t, names };
}
run(); // warm-up
runUnsized();
const runs = [run(), run(), run()];
const unsized = [runUnsized(), runUnsized(), runUnsized()];
const best = Math.min(...runs.map((x) => x.ms));
const bestUnsized = Math.min(...unsized.map((x) => x.ms));
if (unsized[0]!.names.join() !== runs[0]!.names.join()) throw new Error('unsized session found other names');
const mbps = data.length / 1024 / 1024 / (best / 1000);
const mem = process.memoryUsage();
/** clamscan on the same database and data: scan time = (db + data) run minus (db + empty file) run. */
function clamscanMBps(): { loadMs: number; scanMs: number; MBps: number } | null {
  const clamscan = which('clamscan');
  if (!clamscan || process.env.SKIP_CLAMSCAN === '1') return null;
  const dir = mkdtempSync(join(tmpdir(), 'bench-match-'));
  try {
    mkdirSync(join(dir, 'db'));
    writeFileSync(join(dir, 'db', 'bench.ndb'), `${ndb.join('\n')}\n`);
    writeFileSync(join(dir, 'db', 'bench.hdb'), `${hdb.join('\n')}\n`);
    writeFileSync(join(dir, 'db', 'bench.hsb'), `${hsb.join('\n')}\n`);
    writeFileSync(join(dir, 'empty.bin'), Buffer.alloc(16));
    writeFileSync(join(dir, 'data.bin'), data);
    const time = (file: string) => {
      const s = performance.now();
      const r = spawnSync(clamscan, ['--no-summary', '-d', join(dir, 'db'), join(dir, file)], {
        encoding: 'utf8',
      });
      if (r.status !== 0 && r.status !== 1) throw new Error(`clamscan: ${r.stderr}`);
      return performance.now() - s;
    };
    const loadMs = Math.min(time('empty.bin'), time('empty.bin'));
    const totalMs = Math.min(time('data.bin'), time('data.bin'));
    const scanMs = Math.max(1, totalMs - loadMs);
    return {
      loadMs: Math.round(loadMs),
      scanMs: Math.round(scanMs),
      MBps: Math.round(data.length / 1048576 / (scanMs / 1000)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const clam = clamscanMBps();

const results = {
  bodySignatures: db.counts.ndb,
  hashSignatures: db.counts.hdb + db.counts.hsb,
  parseMs: Math.round(t1 - t0),
  compileMs: Math.round(t2 - t1),
  dataMB: MB,
  bestScanMs: Math.round(best),
  MBps: Math.round(mbps),
  matchesOnRandomData: runs[0]!.names.length,
  unsized: {
    MBps: Math.round(data.length / 1024 / 1024 / (bestUnsized / 1000)),
    tailMs: Math.round(Math.min(...unsized.map((x) => x.tailMs)) * 100) / 100,
    ratioToSized: Math.round((best / bestUnsized) * 100) / 100,
  },
  rssMB: Math.round(mem.rss / 1048576),
  clamscan: clam ?? 'not measured (clamscan missing or SKIP_CLAMSCAN=1)',
  ratioVsClamscan: clam ? Math.round((mbps / clam.MBps) * 10) / 10 : null,
};
console.log(JSON.stringify(results, null, 2));
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(join(import.meta.dirname, 'results/match.json'), `${JSON.stringify(results, null, 2)}\n`);
