/**
 * Whole-engine benchmark (issue 2, done-when 5): `scangate scan` against `clamscan` in one run, on
 * the same generated database (~200,000 hash + ~20,000 body signatures) and the same ~100 MB corpus
 * of files (1 KB–10 MB, a few carrying planted matches). Prints wall time, throughput, database
 * load time, peak RSS and the ratio, checks both flag the same files, and writes
 * bench/results/engine.json. Sizes: BENCH_CORPUS_MB, BODY_SIGS, HASH_SIGS.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { which } from '../test/helpers/peers.js';
import { genPattern, instantiate, rng } from '../test/helpers/sigdb.js';

const ROOT = join(import.meta.dirname, '..');
const CORPUS_MB = Number(process.env.BENCH_CORPUS_MB ?? 100);
const BODY = Number(process.env.BODY_SIGS ?? 20_000);
const HASHES = Number(process.env.HASH_SIGS ?? 200_000);

const clamscan = which('clamscan');
if (!clamscan) {
  console.log('skipped: clamscan not installed (npm run peers)');
  process.exit(0);
}

const dir = mkdtempSync(join(os.tmpdir(), 'sg-bench-engine-'));
const db = join(dir, 'db');
const corpus = join(dir, 'corpus');
mkdirSync(db);
mkdirSync(corpus);

const r = rng(2026);
const ndb: string[] = [];
const patterns = [];
for (let i = 0; i < BODY; i++) {
  const p = genPattern(r, { lead: [4, 12] });
  patterns.push(p);
  ndb.push(`Bench.Body.${i}:0:*:${p.hex}`);
}
const hdb: string[] = [];
const hsb: string[] = [];
for (let i = 0; i < HASHES; i++) {
  const size = r.int(1, 10_000_000);
  if (i % 2) hdb.push(`${r.bytes(16).toString('hex')}:${size}:Bench.Md5.${i}`);
  else hsb.push(`${r.bytes(32).toString('hex')}:${size}:Bench.Sha256.${i}`);
}
writeFileSync(join(db, 'bench.ndb'), `${ndb.join('\n')}\n`);
writeFileSync(join(db, 'bench.hdb'), `${hdb.join('\n')}\n`);
writeFileSync(join(db, 'bench.hsb'), `${hsb.join('\n')}\n`);

// Corpus: random binary files; every 20th carries an instance of a body signature at a random offset.
let total = 0;
let n = 0;
const planted = new Set<string>();
while (total < CORPUS_MB * 1024 * 1024) {
  const size = Math.min(r.int(1024, 10 * 1024 * 1024), CORPUS_MB * 1024 * 1024 - total + 1024);
  const data = r.bytes(size);
  // A zero prefix keeps clamscan from treating random bytes as UTF-16 text and scanning a decoded copy.
  data.fill(0, 0, 16);
  const name = `f${String(n).padStart(4, '0')}.bin`;
  if (n % 20 === 0) {
    const hit = instantiate(r, patterns[r.int(0, patterns.length - 1)]!, { maxStar: 50 });
    if (hit.length + 32 < size) {
      hit.copy(data, r.int(16, size - hit.length));
      planted.add(name);
    }
  }
  writeFileSync(join(corpus, name), data);
  total += size;
  n++;
}

interface Run {
  wallSec: number;
  peakRssMiB: number;
  infected: Set<string>;
}

function timed(cmd: string, args: string[]): Run {
  const t0 = performance.now();
  const res = spawnSync('/usr/bin/time', ['-v', cmd, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const wallSec = (performance.now() - t0) / 1000;
  if (res.status !== 0 && res.status !== 1)
    throw new Error(`${cmd} exited ${res.status}: ${res.stderr.slice(-2000)}`);
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(res.stderr)?.[1] ?? 0) / 1024;
  const infected = new Set(
    res.stdout
      .split('\n')
      .filter((l) => l.endsWith(' FOUND'))
      .map((l) => l.split(':')[0]!.split('/').pop()!),
  );
  return { wallSec, peakRssMiB: rss, infected };
}

const tiny = join(dir, 'tiny.txt');
writeFileSync(tiny, 'x');
const ours = (paths: string[]) => [join(ROOT, 'bin/scangate.js'), 'scan', '--db', db, ...paths];
const theirs = (paths: string[]) => ['--no-summary', '-r', '-d', db, ...paths];

console.log(
  `database: ${BODY} body + ${HASHES} hash signatures; corpus: ${n} files, ${(total / 1048576).toFixed(0)} MB`,
);
const loadOurs = timed(process.execPath, ours([tiny]));
const loadTheirs = timed(clamscan, theirs([tiny]));
const scanOurs = timed(process.execPath, ours([corpus]));
const scanTheirs = timed(clamscan, theirs([corpus]));

const mb = total / 1048576;
const oursMBps = mb / Math.max(0.001, scanOurs.wallSec - loadOurs.wallSec);
const theirsMBps = mb / Math.max(0.001, scanTheirs.wallSec - loadTheirs.wallSec);
const disagree = [...new Set([...scanOurs.infected, ...scanTheirs.infected])].filter(
  (f) => scanOurs.infected.has(f) !== scanTheirs.infected.has(f),
);

const results = {
  machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version },
  clamscanVersion: execFileSync(clamscan, ['--version'], { encoding: 'utf8' }).trim(),
  database: { body: BODY, hash: HASHES },
  corpus: { files: n, MB: Math.round(mb), planted: planted.size },
  scangate: {
    loadSec: loadOurs.wallSec,
    wallSec: scanOurs.wallSec,
    MBps: oursMBps,
    peakRssMiB: scanOurs.peakRssMiB,
    infected: scanOurs.infected.size,
  },
  clamscan: {
    loadSec: loadTheirs.wallSec,
    wallSec: scanTheirs.wallSec,
    MBps: theirsMBps,
    peakRssMiB: scanTheirs.peakRssMiB,
    infected: scanTheirs.infected.size,
  },
  // Headline: whole runs, database load included (conservative; subtracting a separate load run is noisy).
  throughputRatio: scanTheirs.wallSec / scanOurs.wallSec,
  throughputRatioExcludingLoad: oursMBps / theirsMBps,
  disagreements: disagree,
};
const f = (x: number) => x.toFixed(2);
console.table([
  {
    tool: 'scangate scan',
    'load s': f(loadOurs.wallSec),
    'total s': f(scanOurs.wallSec),
    'MB/s (incl. load)': f(mb / scanOurs.wallSec),
    'MB/s (excl. load)': f(oursMBps),
    'peak RSS MiB': f(scanOurs.peakRssMiB),
    infected: scanOurs.infected.size,
  },
  {
    tool: 'clamscan',
    'load s': f(loadTheirs.wallSec),
    'total s': f(scanTheirs.wallSec),
    'MB/s (incl. load)': f(mb / scanTheirs.wallSec),
    'MB/s (excl. load)': f(theirsMBps),
    'peak RSS MiB': f(scanTheirs.peakRssMiB),
    infected: scanTheirs.infected.size,
  },
]);
console.log(
  `throughput ratio scangate/clamscan, whole runs incl. database load: ${f(results.throughputRatio)}× (bar ≥ 1.0, goal 3×); ` +
    `excluding load (noisy): ${f(results.throughputRatioExcludingLoad)}×`,
);
console.log(disagree.length ? `DISAGREEMENTS: ${disagree.join(' ')}` : 'same files flagged by both');
writeFileSync(join(ROOT, 'bench/results/engine.json'), `${JSON.stringify(results, null, 2)}\n`);
rmSync(dir, { recursive: true, force: true });
if (disagree.length) process.exit(1);
