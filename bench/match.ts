/**
 * Matcher throughput: 20,000 body signatures + 200,000 hash signatures over 20 MB of random data,
 * fed in 64 KiB chunks, allMatches on (so the whole object is scanned, no early stop). Prints DB compile time and MB/s. Run: npx tsx bench/match.ts
 */

import { compileMatcher } from '../src/engine/match/index.js';
import { SignatureDbBuilder } from '../src/engine/signatures/index.js';
import { genPattern, rng } from '../test/helpers/sigdb.js';

const BODY = Number(process.env.BODY_SIGS ?? 20_000);
const HASHES = Number(process.env.HASH_SIGS ?? 200_000);
const MB = Number(process.env.DATA_MB ?? 20);

const r = rng(42);
const ndb: string[] = [];
for (let i = 0; i < BODY; i++) {
  // Real database parts carry longer static runs than the differential test's worst cases.
  const p = genPattern(r, { lead: [4, 12] });
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
const CHUNK = 64 * 1024;
function run(): { ms: number; names: string[] } {
  const s = performance.now();
  const sess = m.session({ size: data.length, allMatches: true });
  for (let off = 0; off < data.length; off += CHUNK) sess.write(data.subarray(off, off + CHUNK));
  const names = sess.end();
  return { ms: performance.now() - s, names };
}
run(); // warm-up
const runs = [run(), run(), run()];
const best = Math.min(...runs.map((x) => x.ms));
const mbps = data.length / 1024 / 1024 / (best / 1000);
const mem = process.memoryUsage();
console.log(
  JSON.stringify(
    {
      bodySignatures: db.counts.ndb,
      hashSignatures: db.counts.hdb + db.counts.hsb,
      parseMs: Math.round(t1 - t0),
      compileMs: Math.round(t2 - t1),
      dataMB: MB,
      bestScanMs: Math.round(best),
      MBps: Math.round(mbps),
      matchesOnRandomData: runs[0]!.names.length,
      rssMB: Math.round(mem.rss / 1048576),
    },
    null,
    2,
  ),
);
