/**
 * Files above holdLimit stream through the FTP gateway with the last keepBack bytes held until the
 * verdict (real vsftpd, curl and lftp; a 1 MB holdLimit and a 4 MB file): a clean file arrives
 * byte-identical both ways, plain and FTPS; an infected one (EICAR at the very end, so most of it
 * has left before the verdict) is cut — an upload gets 550 and no file is left on the server, a
 * download gets 550 and never a 226 and the client reports a failed transfer. maxFileSize, scanner
 * errors and ABOR keep their guarantees on the streaming path too.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { ScanInput, Scanner } from '../../src/engine/types.js';
import type { Logger } from '../../src/logger.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import {
  capturingLogger,
  curlArgs,
  FtpControl,
  type FtpGatewayUnderTest,
  lftpSettings,
  runClient,
  startFtpGatewayFor,
} from '../helpers/ftp-gateway.js';
import { startVsftpd, type Vsftpd } from '../helpers/ftp-vsftpd.js';
import { peer } from '../helpers/peers.js';
import { TestCa } from '../helpers/pki.js';

type Style = 'explicit' | 'none';
const MB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'scangate-ftp-stream-'));
const CLEAN = join(dir, 'clean.bin');
const INFECTED = join(dir, 'infected.bin');
let clean: Buffer;
let infected: Buffer;
let ca: TestCa;
let builtin: Scanner;
/** How each scan's input arrived: a stream (the file streamed) or whole (Buffer or spool path). */
const inputs: ('stream' | 'whole')[] = [];
/** The builtin engine, recording how it was handed each file. */
const observed: Scanner = {
  scan: (input: ScanInput, ctx) => {
    inputs.push(input instanceof Readable ? 'stream' : 'whole');
    return builtin.scan(input, ctx);
  },
  version: () => builtin.version(),
};
const servers = new Map<Style, Vsftpd>();
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  clean = randomBytes(4 * MB);
  writeFileSync(CLEAN, clean);
  // EICAR as the last bytes: everything before it is released before the scanner can know.
  infected = Buffer.concat([randomBytes(4 * MB), EICAR]);
  writeFileSync(INFECTED, infected);
  ca = await TestCa.create();
  builtin = await createBuiltinScanner({ cacheEntries: 0 });
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  for (const s of servers.values()) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

function havePeers(t: import('node:test').TestContext): boolean {
  return !!(peer(t, 'vsftpd') && peer(t, 'lftp') && peer(t, 'curl'));
}

async function gateway(
  style: Style,
  extra: Record<string, unknown> = {},
  scanner: Scanner = observed,
  logger?: Logger,
): Promise<{ gw: FtpGatewayUnderTest; vs: Vsftpd; gwDir: string }> {
  let vs = servers.get(style);
  if (!vs) {
    vs = await startVsftpd({ tls: style, ca });
    servers.set(style, vs);
  }
  const gwDir = mkdtempSync(join(dir, 'gw-'));
  const gw = await startFtpGatewayFor(vs, {
    dir: gwDir,
    scanner,
    tls: { client: style, upstream: style },
    passivePorts: '46500-46599',
    listener: { holdLimit: '1MB', keepBack: '256KB', spoolMemory: '512KB', ...extra },
    ...(logger ? { logger } : {}),
  });
  cleanups.push(() => gw.close());
  return { gw, vs, gwDir };
}

function curl(gw: FtpGatewayUnderTest, style: Style, path: string, args: string[]) {
  const base = { port: gw.port, tls: style, mode: 'epsv' as const, caFile: gw.caFile, path };
  return runClient('curl', [...curlArgs(base), '-v', ...args]);
}

function lftp(gw: FtpGatewayUnderTest, style: Style, commands: string) {
  const settings = lftpSettings({ tls: style, mode: 'pasv', caFile: gw.caFile });
  return runClient('lftp', ['-c', `${settings}open -u anonymous,x ftp://127.0.0.1:${gw.port}; ${commands}`]);
}

/** Waits (bounded) until the gateway's spool folder is empty: nothing left behind. */
async function spoolEmpty(gwDir: string): Promise<string[]> {
  const spool = join(gwDir, 'spool');
  const left = () => (existsSync(spool) ? readdirSync(spool) : []);
  for (let i = 0; i < 100 && left().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  return left();
}

describe('FTP gateway: files above holdLimit stream with a held-back tail', { concurrency: false }, () => {
  for (const style of ['none', 'explicit'] as const) {
    const label = style === 'none' ? 'plain' : 'FTPS';
    test(`${label}: a clean 4 MB file streams up and down byte-identical (curl up, lftp and curl down)`, async (t) => {
      if (!havePeers(t)) return;
      const { gw, vs, gwDir } = await gateway(style);
      const name = `clean-${style}.bin`;
      inputs.length = 0;
      const up = await curl(gw, style, `/pub/${name}`, ['-T', CLEAN]);
      assert.equal(up.code, 0, up.stderr);
      assert.ok(readFileSync(join(vs.uploadDir, name)).equals(clean), 'stored file differs');
      const back = join(dir, `back-${name}`);
      const down = await curl(gw, style, `/pub/${name}`, ['-o', back]);
      assert.equal(down.code, 0, down.stderr);
      assert.match(down.stderr, /< 226 /);
      assert.ok(readFileSync(back).equals(clean), 'downloaded file differs (curl)');
      rmSync(back);
      const viaLftp = await lftp(gw, style, `get /pub/${name} -o ${back}`);
      assert.equal(viaLftp.code, 0, viaLftp.stderr);
      assert.ok(readFileSync(back).equals(clean), 'downloaded file differs (lftp)');
      // Above holdLimit the scanner read each file as it crossed, not whole afterwards.
      assert.deepEqual(inputs, ['stream', 'stream', 'stream']);
      assert.equal(gw.events.events.filter((e) => e.kind === 'verdict').length, 0);
      assert.deepEqual(await spoolEmpty(gwDir), []);
      rmSync(join(vs.uploadDir, name));
      rmSync(back);
    });

    test(`${label}: EICAR at the end of a 4 MB upload: 550, the partial file is deleted on the server`, async (t) => {
      if (!havePeers(t)) return;
      const { gw, vs, gwDir } = await gateway(style);
      const name = `infected-up-${style}.bin`;
      const up = await curl(gw, style, `/pub/${name}`, ['-T', INFECTED]);
      assert.notEqual(up.code, 0, 'curl reported success');
      assert.match(up.stderr, new RegExp(`< 550 .*${EICAR_NAME}`));
      assert.doesNotMatch(up.stderr, /< 226 /);
      assert.equal(existsSync(join(vs.uploadDir, name)), false, 'the partial upload stayed on the server');
      const verdicts = gw.events.events.filter((e) => e.kind === 'verdict');
      assert.equal(verdicts.length, 1);
      assert.equal(verdicts[0]!.action, 'partiallyblocked');
      assert.equal(verdicts[0]!.signature, EICAR_NAME);
      assert.deepEqual(await spoolEmpty(gwDir), []);
    });

    test(`${label}: EICAR at the end of a 4 MB download: the client's transfer fails, no complete copy`, async (t) => {
      if (!havePeers(t)) return;
      const { gw, vs } = await gateway(style);
      const name = `infected-down-${style}.bin`;
      writeFileSync(join(vs.uploadDir, name), infected, { mode: 0o644 });
      const back = join(dir, `back-${name}`);
      const down = await curl(gw, style, `/pub/${name}`, ['-o', back]);
      assert.notEqual(down.code, 0, 'curl reported success');
      assert.doesNotMatch(down.stderr, /< 226 /);
      assert.ok(!existsSync(back) || statSync(back).size < infected.length, 'curl got the whole file');
      rmSync(back, { force: true });
      const viaLftp = await lftp(gw, style, `get /pub/${name} -o ${back}`);
      assert.notEqual(viaLftp.code, 0, 'lftp reported success');
      assert.ok(!existsSync(back) || statSync(back).size < infected.length, 'lftp got the whole file');
      // lftp retries a transfer that made progress, resuming with REST: each attempt is judged on
      // the whole file again and refused.
      const verdicts = gw.events.events.filter((e) => e.kind === 'verdict');
      assert.ok(verdicts.length >= 2, `${verdicts.length} verdicts`);
      assert.equal(verdicts[0]!.action, 'partiallyblocked');
      for (const v of verdicts) assert.equal(v.signature, EICAR_NAME);
      rmSync(join(vs.uploadDir, name));
    });
  }

  test('a streamed file is cut as soon as it is known infected, both ways, not at its end', async (t) => {
    if (!havePeers(t)) return;
    const { gw, vs } = await gateway('none');
    // EICAR 1.5 MB into a 48 MB file: the rest must not follow it.
    const early = Buffer.concat([randomBytes(1.5 * MB), EICAR, randomBytes(46.5 * MB)]);
    const path = join(dir, 'early.bin');
    writeFileSync(path, early);
    writeFileSync(join(vs.uploadDir, 'early-down.bin'), early, { mode: 0o644 });
    const back = join(dir, 'back-early.bin');
    const down = await curl(gw, 'none', '/pub/early-down.bin', ['-o', back]);
    assert.notEqual(down.code, 0, 'curl reported success');
    const got = existsSync(back) ? statSync(back).size : 0;
    assert.ok(got < 2 * MB, `the client got ${got} bytes`);
    const up = await curl(gw, 'none', '/pub/early-up.bin', ['-T', path]);
    assert.match(up.stderr, new RegExp(`< 550 .*${EICAR_NAME}`));
    assert.equal(existsSync(join(vs.uploadDir, 'early-up.bin')), false, 'the partial upload stayed');
    const verdicts = gw.events.events.filter((e) => e.kind === 'verdict');
    assert.deepEqual(
      verdicts.map((v) => [v.action, v.signature]),
      [
        ['partiallyblocked', EICAR_NAME],
        ['partiallyblocked', EICAR_NAME],
      ],
    );
    rmSync(back, { force: true });
    rmSync(join(vs.uploadDir, 'early-down.bin'));
  });

  test('raw control: a streamed infected download gets 150, an incomplete data connection, then 550 and no 226', async (t) => {
    if (!havePeers(t)) return;
    const { gw, vs } = await gateway('none');
    writeFileSync(join(vs.uploadDir, 'raw-infected.bin'), infected, { mode: 0o644 });
    const c = await FtpControl.open(gw.port);
    assert.match(await c.reply(), /^220 /);
    await c.send('USER anonymous');
    assert.match(await c.reply(), /^230 /);
    await c.send('TYPE I');
    assert.match(await c.reply(), /^200 /);
    await c.send('EPSV');
    const port = Number(/\|\|\|(\d+)\|/.exec(await c.reply())![1]);
    const d = connect(port, '127.0.0.1');
    const got = readAll(d);
    await c.send('RETR /pub/raw-infected.bin');
    assert.match(await c.reply(), /^150 /);
    const data = await got;
    // The gateway resets the connection (SO_LINGER 0): the reader sees ECONNRESET, or, when the
    // reset lands after it has drained its queue, the end of a short stream; never the whole file.
    if (data.error !== undefined) assert.equal(data.error, 'ECONNRESET');
    assert.ok(data.bytes < infected.length, 'the whole file was delivered');
    assert.ok(data.bytes > 0, 'nothing was streamed before the verdict');
    const final = await c.reply();
    assert.match(final, new RegExp(`^550 .*${EICAR_NAME}`));
    await c.send('NOOP');
    assert.match(await c.reply(), /^200 /, 'the session goes on');
    c.close();
  });

  test('a resumed download (REST n) is judged on the whole file: the harmless-looking tail of an infected file is refused', async (t) => {
    if (!havePeers(t)) return;
    const { gw, vs } = await gateway('none');
    writeFileSync(join(vs.uploadDir, 'resumed.bin'), infected, { mode: 0o644 });
    for (const from of [infected.length - 40, 1000]) {
      const back = join(dir, `back-resumed-${from}.bin`);
      const down = await curl(gw, 'none', '/pub/resumed.bin', ['-C', String(from), '-o', back]);
      assert.notEqual(down.code, 0, `resumed at ${from}: curl reported success`);
      assert.match(down.stderr, /< 350 /);
      assert.doesNotMatch(down.stderr, /< 226 /);
      rmSync(back, { force: true });
    }
    // A clean file resumes normally: the client gets exactly the bytes from the offset on.
    writeFileSync(join(vs.uploadDir, 'resumed-clean.bin'), clean, { mode: 0o644 });
    const part = join(dir, 'back-resumed-clean.bin');
    writeFileSync(part, clean.subarray(0, 3 * MB + 5));
    const down = await curl(gw, 'none', '/pub/resumed-clean.bin', ['-C', '-', '-o', part]);
    assert.equal(down.code, 0, down.stderr);
    assert.ok(readFileSync(part).equals(clean), 'resumed file differs');
  });

  test('the server refuses a streamed upload when it starts: its reply reaches the client, the session goes on', async (t) => {
    if (!havePeers(t)) return;
    const { gw } = await gateway('none');
    const c = await FtpControl.open(gw.port);
    assert.match(await c.reply(), /^220 /);
    await c.send('USER anonymous');
    assert.match(await c.reply(), /^230 /);
    await c.send('EPSV');
    const port = Number(/\|\|\|(\d+)\|/.exec(await c.reply())![1]);
    // vsftpd cannot create a file in a folder that does not exist: 553, once holdLimit is passed.
    await c.send('STOR /pub/no-such-folder/x.bin');
    assert.match(await c.reply(), /^150 /);
    const d = connect(port, '127.0.0.1');
    d.on('error', () => {});
    await new Promise((r) => d.once('connect', r));
    d.end(clean);
    assert.match(await c.reply(), /^553 /);
    await c.send('NOOP');
    assert.match(await c.reply(), /^200 /, 'the session goes on');
    d.destroy();
    c.close();
  });

  for (const style of ['none', 'explicit'] as const) {
    test(`${style === 'none' ? 'plain' : 'FTPS'}: a streamed upload over maxFileSize: curl and lftp show the 552, nothing is stored, the refusal is logged`, async (t) => {
      if (!havePeers(t)) return;
      const logs: string[] = [];
      const { gw, vs, gwDir } = await gateway(style, { maxFileSize: '3MB' }, observed, capturingLogger(logs));
      // 24 MB against a 3 MB limit: the clients are still sending when the limit is crossed. The
      // gateway reads and drops the rest (tooBigDrain, 64 MB) instead of resetting them mid-send.
      const up = await curl(gw, style, `/pub/too-big-curl-${style}.bin`, ['-T', tooBigFile()]);
      // 70 is curl's exit code for a 552 ("Exceeded storage allocation"); a reset would be 55 or 56.
      assert.equal(up.code, 70, up.stderr);
      assert.match(up.stderr, /< 552 .*larger than 3145728 bytes/);
      // Nothing stored once the client has its answer: the DELE was answered before the 552.
      assert.deepEqual(stored(vs, 'too-big-'), []);
      const viaLftp = await lftp(gw, style, `put ${tooBigFile()} -o /pub/too-big-lftp-${style}.bin`);
      assert.notEqual(viaLftp.code, 0, 'lftp reported success');
      // lftp reads the 552 while it is still sending, and stops: no retry, no reset.
      assert.match(viaLftp.stderr, /Access failed: 552 /);
      assert.deepEqual(stored(vs, 'too-big-'), []);
      assert.deepEqual(await spoolEmpty(gwDir), []);
      const refused = logs.filter((l) => l.includes('upload larger than maxFileSize'));
      assert.equal(refused.length, 2, logs.join(''));
      assert.ok(refused.every((l) => JSON.parse(l).limit === 3 * MB));
    });
  }

  test('tooBigDrain bounds what the gateway reads past maxFileSize: beyond it the data connection is reset, and still nothing is stored', async (t) => {
    if (!havePeers(t)) return;
    const { gw, vs, gwDir } = await gateway('none', { maxFileSize: '3MB', tooBigDrain: '1MB' });
    const up = await curl(gw, 'none', '/pub/too-big-reset.bin', ['-T', tooBigFile()]);
    // 20 MB past the limit: curl's send fails on the reset (55 or 56) or, if it had handed all
    // to its socket first, it reads the 552 (70). Never success, never a stored file; but after a
    // reset curl leaves at once, while the gateway may still be waiting for the DELE's answer.
    assert.ok([55, 56, 70].includes(up.code ?? -1), up.stderr);
    assert.deepEqual(await storedAfterWhile(vs, 'too-big-'), []);
    assert.deepEqual(await spoolEmpty(gwDir), []);
  });

  test('a streamed upload found infected before maxFileSize is refused as infected (550 and its event), not as too big', async (t) => {
    if (!havePeers(t)) return;
    const { gw, vs } = await gateway('none', { maxFileSize: '8MB' });
    const path = join(dir, 'early-too-big.bin');
    writeFileSync(path, Buffer.concat([randomBytes(1.5 * MB), EICAR, randomBytes(14 * MB)]));
    const up = await curl(gw, 'none', '/pub/early-too-big.bin', ['-T', path]);
    assert.notEqual(up.code, 0);
    assert.match(up.stderr, new RegExp(`< 550 .*${EICAR_NAME}`));
    assert.deepEqual(stored(vs, 'early-too-big'), []);
    const verdicts = gw.events.events.filter((e) => e.kind === 'verdict');
    assert.deepEqual(
      verdicts.map((v) => [v.action, v.signature]),
      [['partiallyblocked', EICAR_NAME]],
    );
  });

  test('scanner error after bytes were released: 451 up (file deleted) and down (no 226)', async (t) => {
    if (!havePeers(t)) return;
    // Reads every byte, then fails: the stream has long started when the error comes.
    const failing: Scanner = {
      scan: async (input) => {
        if (input instanceof Readable) for await (const _ of input);
        return { status: 'error', reason: 'backend down' };
      },
      version: () => builtin.version(),
    };
    const { gw, vs } = await gateway('none', {}, failing);
    const up = await curl(gw, 'none', '/pub/unscanned.bin', ['-T', CLEAN]);
    assert.notEqual(up.code, 0);
    assert.match(up.stderr, /< 451 /);
    assert.equal(existsSync(join(vs.uploadDir, 'unscanned.bin')), false);
    writeFileSync(join(vs.uploadDir, 'unscanned-down.bin'), clean, { mode: 0o644 });
    const back = join(dir, 'back-unscanned.bin');
    const down = await curl(gw, 'none', '/pub/unscanned-down.bin', ['-o', back]);
    assert.notEqual(down.code, 0);
    assert.doesNotMatch(down.stderr, /< 226 /);
    assert.ok(!existsSync(back) || statSync(back).size < clean.length);
    const actions = gw.events.events.filter((e) => e.kind === 'verdict').map((e) => e.action);
    assert.deepEqual(actions, ['partiallyblocked', 'partiallyblocked']);
  });

  test('APPE above holdLimit is held whole: an infected append is refused before the server sees a byte', async (t) => {
    if (!havePeers(t)) return;
    const { gw, vs } = await gateway('none');
    const head = randomBytes(2 * MB);
    writeFileSync(join(vs.uploadDir, 'appended.bin'), head, { mode: 0o666 });
    const up = await curl(gw, 'none', '/pub/appended.bin', ['-T', INFECTED, '--append']);
    assert.notEqual(up.code, 0);
    assert.match(up.stderr, new RegExp(`< 550 .*${EICAR_NAME}`));
    assert.ok(readFileSync(join(vs.uploadDir, 'appended.bin')).equals(head), 'the existing file changed');
    const verdicts = gw.events.events.filter((e) => e.kind === 'verdict');
    assert.deepEqual(
      verdicts.map((v) => v.action),
      ['blocked'],
    );
  });
});

/** A 24 MB file of fresh random bytes (written once), for the maxFileSize tests. */
function tooBigFile(): string {
  const path = join(dir, 'too-big.bin');
  if (!existsSync(path)) writeFileSync(path, randomBytes(24 * MB));
  return path;
}

/** Files in vsftpd's upload folder whose name starts with `prefix`. */
function stored(vs: Vsftpd, prefix: string): string[] {
  return readdirSync(vs.uploadDir).filter((n) => n.startsWith(prefix));
}

/** stored(), once it is empty or after a bounded wait: work the gateway finishes after the client left. */
async function storedAfterWhile(vs: Vsftpd, prefix: string): Promise<string[]> {
  for (let i = 0; i < 100 && stored(vs, prefix).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  return stored(vs, prefix);
}

/** Reads a socket to its end; the error code when it ended with one. */
function readAll(s: Socket): Promise<{ bytes: number; error?: string }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let error: string | undefined;
    s.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code;
    });
    s.on('close', () => resolve({ bytes, error }));
    setTimeout(() => s.destroy(), 30_000).unref();
  });
}
