/**
 * Differential test (issue 8, done-when 1): Debian's clamdscan, pointed by a config file at Debian's
 * clamd and then at scangate's clamd listener (unix socket, same generated database), scans one
 * folder with --stream (INSTREAM per file), with plain path scanning (CONTSCAN) and with -m
 * (MULTISCAN); both print the same result lines, the same infected count and exit the same way.
 * clamd marks signatures from unsigned databases `.UNOFFICIAL` (ClamAV's readdb); scangate keeps the
 * names as written, so that suffix is the one difference removed before comparing. The clamscan npm
 * package in TCP mode then scans files and a stream through scangate.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { BuiltinScanner } from '../../src/engine/scanner.js';
import {
  type DebianClamd,
  type ScangateClamd,
  startDebianClamd,
  startScangateClamd,
} from '../helpers/clamd-daemon.js';
import { EICAR } from '../helpers/eicar.js';
import { peer, which } from '../helpers/peers.js';
import { genPattern, instantiate, rng } from '../helpers/sigdb.js';
import { buildZip } from '../helpers/zipwriter.js';

let dir: string;
let corpus: string;
let clamd: DebianClamd | null = null;
let ours: ScangateClamd | null = null;
let tcp: ScangateClamd | null = null;
let scanner: BuiltinScanner;
let planted = 0;

/** Random bytes after 16 zeros (so clamd does not take them for UTF-16 text and scan a decoded copy). */
function binary(r: ReturnType<typeof rng>, size: number, payload?: Buffer, at = 0): Buffer {
  const b = r.bytes(size);
  b.fill(0, 0, 16);
  payload?.copy(b, Math.max(16, Math.min(at, size - payload.length)));
  return b;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-clamd-daemon-'));
  const db = join(dir, 'db');
  corpus = join(dir, 'corpus folder');
  mkdirSync(db);
  mkdirSync(join(corpus, 'deep', 'er'), { recursive: true });
  const r = rng(8008);
  const ndb = [`Eicar-Signature:0:*:${EICAR.toString('hex')}`];
  for (let i = 0; i < 30; i++) {
    const p = genPattern(r);
    ndb.push(`Gen.Daemon.${i}:0:*:${p.hex}`);
    const sub = i % 3 === 0 ? 'deep' : i % 3 === 1 ? join('deep', 'er') : '.';
    if (i % 2 === 0) {
      const size = r.int(200, 100_000);
      writeFileSync(join(corpus, sub, `hit-${i}.bin`), binary(r, size, instantiate(r, p), r.int(16, size)));
      planted++;
    }
    writeFileSync(join(corpus, sub, `clean-${i}.bin`), binary(r, r.int(1, 50_000)));
  }
  writeFileSync(join(db, 'gen.ndb'), `${ndb.join('\n')}\n`);
  writeFileSync(join(db, 'eicar.hdb'), '44d88612fea8a8f36de82e1278abb02f:68:Eicar-Signature\n');
  writeFileSync(join(corpus, 'eicar.com'), EICAR);
  writeFileSync(join(corpus, 'deep', 'eicar.txt.gz'), gzipSync(Buffer.concat([EICAR, Buffer.from('\n')])));
  writeFileSync(join(corpus, 'deep', 'er', 'eicar.zip'), buildZip([{ name: 'x/eicar.com', data: EICAR }]));
  writeFileSync(join(corpus, 'empty'), '');
  writeFileSync(join(corpus, 'readme with spaces.txt'), 'nothing to see here\n');

  scanner = await createBuiltinScanner({ signatures: [db] });
  ours = await startScangateClamd(scanner, { listen: join(dir, 'scangate.sock') });
  tcp = await startScangateClamd(scanner, { listen: '127.0.0.1:0', name: 'tcp' });
  const clamdBin = which('clamd');
  if (clamdBin && which('clamdscan')) clamd = await startDebianClamd(clamdBin, join(dir, 'clamd'), db);
});

after(async () => {
  clamd?.stop();
  await ours?.service.close(0);
  await tcp?.service.close(0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs a program without blocking the event loop (scangate's daemon lives in this process). */
function run(bin: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(bin, args, { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function clamdscan(bin: string, socket: string, args: string[], target = corpus) {
  const conf = join(dir, `clamdscan-${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(conf, `LocalSocket ${socket}\n`);
  const r = await run(bin, [`--config-file=${conf}`, ...args, target]);
  const lines = r.stdout
    .split('\n')
    .filter((l) => l && !/^(Time|Start Date|End Date):|^-+ SCAN SUMMARY/.test(l))
    .map((l) => l.replace(/\.UNOFFICIAL FOUND$/, ' FOUND'))
    .sort();
  return { code: r.code, lines, stderr: r.stderr };
}

for (const [label, args] of [
  ['--stream (INSTREAM)', ['--stream']],
  ['paths (CONTSCAN)', []],
  ['-m (MULTISCAN)', ['-m']],
] as const) {
  test(`clamdscan ${label}: scangate prints what Debian's clamd prints`, async (t) => {
    const bin = peer(t, 'clamdscan', 'clamdscan');
    if (!bin || !peer(t, 'clamd', 'clamav-daemon') || !clamd || !ours) return;
    const theirs = await clamdscan(bin, clamd.sock, [...args]);
    const mine = await clamdscan(bin, ours.address, [...args]);
    assert.equal(theirs.code, 1, theirs.stderr);
    const found = theirs.lines.filter((l) => l.endsWith(' FOUND'));
    // Every planted signature, EICAR plain, gzipped and zipped.
    assert.equal(found.length, planted + 3, theirs.lines.join('\n'));
    assert.ok(theirs.lines.includes(`Infected files: ${planted + 3}`), theirs.lines.join('\n'));
    assert.deepEqual(mine.lines, theirs.lines);
    assert.equal(mine.code, theirs.code, mine.stderr);
  });
}

test('clamdscan on a clean file and a missing path: same lines and exit codes', async (t) => {
  const bin = peer(t, 'clamdscan', 'clamdscan');
  if (!bin || !clamd || !ours) return;
  for (const target of ['readme with spaces.txt', 'no-such-file']) {
    const theirs = await clamdscan(bin, clamd.sock, ['--no-summary'], join(corpus, target));
    const mine = await clamdscan(bin, ours.address, ['--no-summary'], join(corpus, target));
    assert.deepEqual(mine, { ...theirs, stderr: mine.stderr }, target);
  }
});

test('the clamscan npm package (TCP mode) scans files and a stream through scangate', async () => {
  const { default: NodeClam } = await import('clamscan');
  const [host, port] = tcp!.address.split(':');
  const clam = await new NodeClam().init({
    removeInfected: false,
    clamscan: { active: false },
    clamdscan: {
      host,
      port: Number(port),
      socket: null,
      localFallback: false,
      timeout: 30_000,
      active: true,
    },
    preference: 'clamdscan',
  });
  assert.match(await clam.getVersion(), /^ClamAV scangate/);
  const bad = await clam.isInfected(join(corpus, 'eicar.com'));
  assert.equal(bad.isInfected, true);
  assert.deepEqual(bad.viruses, ['Eicar-Signature']);
  const good = await clam.isInfected(join(corpus, 'readme with spaces.txt'));
  assert.equal(good.isInfected, false);
  const s = await clam.scanStream(Readable.from([EICAR.subarray(0, 30), EICAR.subarray(30)]));
  assert.equal(s.isInfected, true);
  assert.deepEqual(s.viruses, ['Eicar-Signature']);
});
