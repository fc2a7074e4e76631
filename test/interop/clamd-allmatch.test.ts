/**
 * ALLMATCHSCAN against Debian's clamd: a file matched by six signatures of a test database (a body
 * signature anywhere, one at an absolute offset, one relative to the end, a two-part one, an MD5
 * hash and a logical signature), the same file in a deflated zip (only its entry matches) and in a
 * stored zip (the zip's own bytes match too), a file with one match and a clean one. scangate's
 * daemon must send the same lines as clamd, compared as sets:
 *  - clamd's order is its engine's internal one (a hash after body matches, a container's entry
 *    before its own bytes), not a documented one;
 *  - ClamAV 1.4 matches a file it types as binary data twice (its type-detection pass and its raw
 *    pass both report under --allmatch), so it prints each line of such a file twice, a text file's
 *    once; scangate prints a name once per object it matched in (twice for the stored zip).
 * clamd's `.UNOFFICIAL` suffix for unsigned databases is removed first. `clamdscan --allmatch` and
 * `scangate scan --allmatch` against `clamscan --allmatch` are compared the same way.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { BuiltinScanner } from '../../src/engine/scanner.js';
import {
  type DebianClamd,
  exchange,
  type ScangateClamd,
  startDebianClamd,
  startScangateClamd,
} from '../helpers/clamd-daemon.js';
import { peer, which } from '../helpers/peers.js';
import { rng } from '../helpers/sigdb.js';
import { buildZip } from '../helpers/zipwriter.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'scangate.js');
let dir: string;
let db: string;
let corpus: string;
let clamd: DebianClamd | null = null;
let ours: ScangateClamd | null = null;
let scanner: BuiltinScanner;

const MULTI = ['AM.Star', 'AM.Abs', 'AM.Eof', 'AM.TwoPart', 'AM.Hash', 'AM.Logical'];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-clamd-allmatch-'));
  db = join(dir, 'db');
  corpus = join(dir, 'corpus');
  mkdirSync(db);
  mkdirSync(corpus);
  const r = rng(4242);
  // 16 zero bytes first: clamd would otherwise take random bytes for UTF-16 text and scan a decoded copy.
  const multi = r.bytes(4000);
  multi.fill(0, 0, 16);
  const p1 = r.bytes(24);
  const p2 = r.bytes(20);
  const p3 = r.bytes(20);
  p1.copy(multi, 100);
  p2.copy(multi, 2000);
  p3.copy(multi, multi.length - 40);
  const hex = (b: Buffer) => b.toString('hex');
  writeFileSync(
    join(db, 'am.ndb'),
    [
      `AM.Star:0:*:${hex(p1)}`,
      `AM.Abs:0:2000:${hex(p2)}`,
      `AM.Eof:0:EOF-40:${hex(p3)}`,
      `AM.TwoPart:0:*:${hex(p1.subarray(0, 8))}*${hex(p2.subarray(0, 8))}`,
      '',
    ].join('\n'),
  );
  const md5 = createHash('md5').update(multi).digest('hex');
  writeFileSync(join(db, 'am.hdb'), `${md5}:${multi.length}:AM.Hash\n`);
  writeFileSync(
    join(db, 'am.ldb'),
    `AM.Logical;Engine:51-255,Target:0;0&1;${hex(p1.subarray(4, 20))};${hex(p3.subarray(2, 18))}\n`,
  );
  writeFileSync(join(corpus, 'multi.bin'), multi);
  const single = r.bytes(3000);
  single.fill(0, 0, 16);
  p1.copy(single, 1500);
  writeFileSync(join(corpus, 'single.bin'), single);
  const clean = r.bytes(3000);
  clean.fill(0, 0, 16);
  writeFileSync(join(corpus, 'clean.bin'), clean);
  writeFileSync(join(corpus, 'deflated.zip'), buildZip([{ name: 'multi.bin', data: multi }]));
  writeFileSync(join(corpus, 'stored.zip'), buildZip([{ name: 'multi.bin', data: multi, method: 0 }]));

  scanner = await createBuiltinScanner({ signatures: [db] });
  ours = await startScangateClamd(scanner, { listen: join(dir, 'scangate.sock') });
  const clamdBin = which('clamd');
  if (clamdBin) clamd = await startDebianClamd(clamdBin, join(dir, 'clamd'), db);
});

after(async () => {
  clamd?.stop();
  await ours?.service.close(0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const tidy = (out: string) =>
  out
    .split('\n')
    .filter((l) => l && !/^(Time|Start Date|End Date):|^-+ SCAN SUMMARY/.test(l))
    .map((l) => l.replace(/\.UNOFFICIAL FOUND$/, ' FOUND'))
    .filter((l, i, all) => all.indexOf(l) === i)
    .sort();

async function ask(address: string, command: string): Promise<string[]> {
  return tidy((await exchange(address, Buffer.from(`n${command}\n`))).toString('utf8'));
}

function run(bin: string, args: string[]): Promise<{ code: number | null; lines: string[] }> {
  return new Promise((resolve) => {
    execFile(
      bin,
      args,
      { encoding: 'utf8', timeout: 120_000, env: { ...process.env, SCANGATE_FROM_SOURCE: '1' } },
      (err, stdout) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, lines: tidy(stdout) });
      },
    );
  });
}

test('ALLMATCHSCAN: one line per matching signature, the same lines as Debian clamd', async (t) => {
  if (!peer(t, 'clamd', 'clamav-daemon') || !clamd || !ours) return;
  const expected: Record<string, number> = {
    'multi.bin': MULTI.length,
    'single.bin': 1,
    'deflated.zip': MULTI.length,
    // The entry's six; the zip's own bytes add AM.Star and AM.TwoPart again (the others are placed or hashed).
    'stored.zip': MULTI.length,
  };
  for (const [name, count] of Object.entries(expected)) {
    const path = join(corpus, name);
    const theirs = await ask(clamd.sock, `ALLMATCHSCAN ${path}`);
    const mine = await ask(ours.address, `ALLMATCHSCAN ${path}`);
    assert.equal(theirs.length, count, `clamd on ${name}: ${theirs.join('\n')}`);
    assert.deepEqual(mine, theirs, name);
  }
  const multi = await ask(ours.address, `ALLMATCHSCAN ${join(corpus, 'multi.bin')}`);
  assert.deepEqual(multi, MULTI.map((n) => `${join(corpus, 'multi.bin')}: ${n} FOUND`).sort());
  const clean = join(corpus, 'clean.bin');
  assert.deepEqual(
    await ask(ours.address, `ALLMATCHSCAN ${clean}`),
    await ask(clamd.sock, `ALLMATCHSCAN ${clean}`),
  );
  // A folder: like SCAN, clamd stops at the first file with a detection; which one comes first is
  // the walk's order, so only the shape is compared: every line names one file, all FOUND.
  for (const address of [clamd.sock, ours.address]) {
    const lines = await ask(address, `ALLMATCHSCAN ${corpus}`);
    const files = new Set(lines.map((l) => l.slice(0, l.indexOf(': '))));
    assert.equal(files.size, 1, lines.join('\n'));
    assert.ok(lines.length >= 1 && lines.every((l) => l.endsWith(' FOUND')), lines.join('\n'));
  }
});

test('the verdict cache: a one-match verdict never answers ALLMATCHSCAN, nor the reverse', async (t) => {
  if (!peer(t, 'clamd', 'clamav-daemon') || !clamd || !ours) return;
  const path = join(dir, 'cached.bin');
  const { readFileSync } = await import('node:fs');
  // Fresh content (nothing cached yet): the multi-match file with one byte changed outside the
  // placed patterns, so every signature but the hash still matches.
  const data = Buffer.from(readFileSync(join(corpus, 'multi.bin')));
  data[3000] = (data[3000]! + 1) & 0xff;
  writeFileSync(path, data);
  const one = await ask(ours.address, `SCAN ${path}`);
  assert.equal(one.length, 1, one.join('\n'));
  const theirs = await ask(clamd.sock, `ALLMATCHSCAN ${path}`);
  assert.equal(theirs.length, MULTI.length - 1, theirs.join('\n'));
  assert.deepEqual(await ask(ours.address, `ALLMATCHSCAN ${path}`), theirs);
  const scans = scanner.counters.scans;
  // Both verdicts are cached now, each under its own key: answered without matching again.
  assert.deepEqual(await ask(ours.address, `SCAN ${path}`), one);
  assert.deepEqual(await ask(ours.address, `ALLMATCHSCAN ${path}`), theirs);
  assert.equal(scanner.counters.scans, scans, 'both answers came from the cache');
});

test('clamdscan --allmatch prints the same lines against scangate as against clamd', async (t) => {
  const bin = peer(t, 'clamdscan', 'clamdscan');
  if (!bin || !clamd || !ours) return;
  const lines = async (socket: string) => {
    const conf = join(dir, `clamdscan-${Math.random().toString(36).slice(2)}.conf`);
    writeFileSync(conf, `LocalSocket ${socket}\n`);
    return run(bin, [`--config-file=${conf}`, '--allmatch', corpus]);
  };
  const theirs = await lines(clamd.sock);
  const mine = await lines(ours.address);
  assert.equal(theirs.code, 1);
  const found = theirs.lines.filter((l) => l.endsWith(' FOUND'));
  assert.equal(found.length, 3 * MULTI.length + 1, theirs.lines.join('\n'));
  assert.deepEqual(mine, theirs);
});

test('scangate scan --allmatch prints what clamscan --allmatch prints', async (t) => {
  const clamscan = peer(t, 'clamscan', 'clamav');
  if (!clamscan) return;
  const theirs = await run(clamscan, ['--no-summary', '--allmatch', '-d', db, '-r', corpus]);
  const mine = await run(process.execPath, [BIN, 'scan', '--allmatch', '--db', db, corpus]);
  assert.equal(theirs.code, 1);
  assert.ok(theirs.lines.includes(`${join(corpus, 'clean.bin')}: OK`), theirs.lines.join('\n'));
  assert.deepEqual(mine, theirs);
  const one = await run(process.execPath, [BIN, 'scan', '--db', db, join(corpus, 'multi.bin')]);
  assert.equal(one.lines.length, 1, one.lines.join('\n'));
});
