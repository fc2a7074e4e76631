/**
 * FTP relay behaviour a real client rarely shows, driven over a raw control connection against
 * vsftpd (plain legs, so the bytes are visible): scanner outage → 451 and nothing stored; a scan
 * slower than vsftpd's idle timeout survives thanks to NOOPs on the server leg; ABOR during an
 * upload; malformed and hostile commands answered with RFC 959 error replies and the session goes
 * on; credentials never reach the log.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import type { Logger } from '../../src/logger.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { capturingLogger, FtpControl, startFtpGateway } from '../helpers/ftp-gateway.js';
import { startVsftpd, type Vsftpd } from '../helpers/ftp-vsftpd.js';
import { peer } from '../helpers/peers.js';
import { TestCa } from '../helpers/pki.js';

const dir = mkdtempSync(join(tmpdir(), 'scangate-ftp-relay-'));
let vs: Vsftpd | null = null;
let builtin: Scanner;
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  builtin = await createBuiltinScanner();
});
after(async () => {
  for (const c of cleanups) await c().catch(() => {});
  await vs?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function setup(
  t: import('node:test').TestContext,
  scanner: Scanner,
  extra: Record<string, unknown> = {},
  logger?: Logger,
) {
  return setupIn(t, mkdtempSync(join(dir, 'gw-')), extra, logger, scanner);
}

/** setup() with the gateway's data folder chosen by the caller (to look into its spool). */
async function setupIn(
  t: import('node:test').TestContext,
  gwDir: string,
  extra: Record<string, unknown> = {},
  logger?: Logger,
  scanner: Scanner = builtin,
) {
  if (!peer(t, 'vsftpd')) return null;
  vs ??= await startVsftpd({ tls: 'none', ca: await TestCa.create(), extra: ['idle_session_timeout=2'] });
  const gw = await startFtpGateway({
    dir: gwDir,
    scanner,
    listener: {
      upstream: `127.0.0.1:${vs.port}`,
      tls: { client: 'none', upstream: 'none' },
      passivePorts: '46400-46499',
      ...extra,
    },
    ...(logger ? { logger } : {}),
  });
  cleanups.push(() => gw.close());
  const c = await FtpControl.open(gw.port);
  assert.match(await c.reply(), /^220 /);
  return { gw, c, vs };
}

async function login(c: FtpControl): Promise<void> {
  await c.send('USER anonymous');
  assert.match(await c.reply(), /^230 /);
  await c.send('TYPE I');
  assert.match(await c.reply(), /^200 /);
}

/** EPSV, then the transfer command, then the data connection. */
async function upload(c: FtpControl, name: string, data: Buffer, verb = 'STOR'): Promise<string> {
  await c.send('EPSV');
  const port = Number(/\|\|\|(\d+)\|/.exec(await c.reply())![1]);
  await c.send(`${verb} ${name}`);
  assert.match(await c.reply(), /^150 /);
  const d = connect(port, '127.0.0.1');
  await new Promise((r) => d.once('connect', r));
  await new Promise<void>((r) => d.end(data, () => r()));
  return c.reply();
}

/** EPSV and STOR, then the open data connection, for a test that sends the bytes itself. */
async function startUpload(c: FtpControl, name: string): Promise<Socket> {
  await c.send('EPSV');
  const port = Number(/\|\|\|(\d+)\|/.exec(await c.reply())![1]);
  await c.send(`STOR ${name}`);
  assert.match(await c.reply(), /^150 /);
  const d = connect(port, '127.0.0.1');
  d.on('error', () => {});
  await new Promise((r) => d.once('connect', r));
  return d;
}

describe('FTP relay (raw control connection, vsftpd)', { concurrency: false }, () => {
  test('scanner error: 451 and nothing stored', async (t) => {
    const failing: Scanner = {
      scan: async () => ({ status: 'error', reason: 'backend down' }),
      version: () => builtin.version(),
    };
    const s = await setup(t, failing);
    if (!s) return;
    await login(s.c);
    assert.match(await upload(s.c, '/pub/err.bin', Buffer.from('hello')), /^451 /);
    assert.equal(existsSync(join(s.vs.uploadDir, 'err.bin')), false);
    assert.equal(s.gw.events.events.filter((e) => e.kind === 'verdict').length, 1);
    s.c.close();
  });

  test('a scan longer than the server idle timeout: NOOPs keep the server leg, the upload lands', async (t) => {
    const slow: Scanner = {
      scan: async (input, ctx) => {
        await new Promise((r) => setTimeout(r, 4_000));
        return builtin.scan(input, ctx);
      },
      version: () => builtin.version(),
    };
    // vsftpd here drops a control connection idle for 2 s; the gateway sends NOOP after 0.5 s.
    const s = await setup(t, slow, { keepalive: '500ms' });
    if (!s) return;
    await login(s.c);
    assert.match(await upload(s.c, '/pub/slow.bin', Buffer.from('clean content')), /^226 /);
    assert.equal(existsSync(join(s.vs.uploadDir, 'slow.bin')), true);
    s.c.close();
  });

  test('ABOR during an upload: 426 then 226, nothing stored, the session goes on', async (t) => {
    const s = await setup(t, builtin);
    if (!s) return;
    await login(s.c);
    const d = await startUpload(s.c, '/pub/aborted.bin');
    d.write(Buffer.alloc(10_000, 1));
    await s.c.sendRaw(Buffer.concat([Buffer.from([0xff, 0xf4, 0xff, 0xf2]), Buffer.from('ABOR\r\n')]));
    assert.match(await s.c.reply(), /^426 /);
    assert.match(await s.c.reply(), /^226 /);
    assert.equal(existsSync(join(s.vs.uploadDir, 'aborted.bin')), false);
    await s.c.send('NOOP');
    assert.match(await s.c.reply(), /^200 /);
    d.destroy();
    s.c.close();
  });

  test('an upload over maxFileSize: 552, nothing stored, no spool file left, the session goes on', async (t) => {
    const gwDir = mkdtempSync(join(dir, 'gw-big-'));
    const s = await setupIn(t, gwDir, { maxFileSize: '8MB', spoolMemory: '1MB' });
    if (!s) return;
    await login(s.c);
    const d = await startUpload(s.c, '/pub/big.bin');
    let failure: string | undefined;
    d.on('error', (e: NodeJS.ErrnoException) => {
      failure = e.code;
    });
    const closed = new Promise((r) => d.once('close', r));
    // 4 MiB writes: batches are being written to the spool file when the limit is crossed.
    for (let i = 0; i < 6 && !d.destroyed; i++) d.write(Buffer.alloc(4 * 1024 * 1024, i));
    d.end();
    assert.match(await s.c.reply(), /^552 /);
    // The 16 MB past the limit were read and dropped (tooBigDrain), not refused with a reset: the
    // sender finished, and the gateway closed its side after the sender's end.
    await closed;
    assert.equal(failure, undefined);
    assert.equal(existsSync(join(s.vs.uploadDir, 'big.bin')), false);
    await s.c.send('NOOP');
    assert.match(await s.c.reply(), /^200 /);
    s.c.close();
    d.destroy();
    // The spool is removed once the transfer's writes have settled (bounded wait, not a timing claim).
    const spoolDir = join(gwDir, 'spool');
    const left = () => (existsSync(spoolDir) ? readdirSync(spoolDir) : []);
    for (let i = 0; i < 100 && left().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(left(), []);
  });

  test('ABOR while a download is delivered: 426 then 226, the session goes on', async (t) => {
    const s = await setup(t, builtin);
    if (!s) return;
    await login(s.c);
    assert.match(await upload(s.c, '/pub/big-abor.bin', Buffer.alloc(8 * 1024 * 1024, 7)), /^226 /);
    await s.c.send('EPSV');
    const port = Number(/\|\|\|(\d+)\|/.exec(await s.c.reply())![1]);
    const d = connect(port, '127.0.0.1');
    d.on('error', () => {});
    d.pause(); // never read: the gateway's writes stall on backpressure
    await new Promise((r) => d.once('connect', r));
    await s.c.send('RETR /pub/big-abor.bin');
    assert.match(await s.c.reply(), /^150 /);
    await s.c.send('ABOR');
    assert.match(await s.c.reply(), /^426 /);
    assert.match(await s.c.reply(), /^226 /);
    await s.c.send('NOOP');
    assert.match(await s.c.reply(), /^200 /);
    d.destroy();
    s.c.close();
  });

  test('EICAR in two harmless pieces (STOR then APPE, or REST+STOR) is refused; honest appends land', async (t) => {
    const s = await setup(t, builtin);
    if (!s) return;
    await login(s.c);
    const head = EICAR.subarray(0, 30);
    const rest = EICAR.subarray(30);
    assert.match(await upload(s.c, '/pub/split.com', head), /^226 /);
    assert.match(await upload(s.c, '/pub/split.com', rest, 'APPE'), new RegExp(`^550 .*${EICAR_NAME}`));
    assert.ok(readFileSync(join(s.vs.uploadDir, 'split.com')).equals(head));
    await s.c.send('REST 30');
    assert.match(await s.c.reply(), /^350 /);
    assert.match(await upload(s.c, '/pub/split.com', rest), new RegExp(`^550 .*${EICAR_NAME}`));
    assert.ok(readFileSync(join(s.vs.uploadDir, 'split.com')).equals(head));
    assert.match(await upload(s.c, '/pub/split.com', Buffer.from(' and more'), 'APPE'), /^226 /);
    await s.c.send('REST 5');
    assert.match(await s.c.reply(), /^350 /);
    assert.match(await upload(s.c, '/pub/split.com', Buffer.from('!')), /^226 /);
    const want = Buffer.concat([
      head.subarray(0, 5),
      Buffer.from('!'),
      head.subarray(6),
      Buffer.from(' and more'),
    ]);
    assert.ok(readFileSync(join(s.vs.uploadDir, 'split.com')).equals(want));
    s.c.close();
  });

  test('malformed and hostile commands get error replies; credentials never logged', async (t) => {
    const lines: string[] = [];
    const logger = capturingLogger(lines, 'trace');
    const s = await setup(t, builtin, {}, logger);
    if (!s) return;
    const c = s.c;
    const expect: [string | Buffer, RegExp][] = [
      ['RETR x', /^425 /],
      ['PORT 1,2,3', /^501 /],
      ['PORT 127,0,0,1,0,21', /^500 /],
      ['EPRT |3|1.2.3.4|5000|', /^522 /],
      ['EPRT |1|10.1.2.3|5000|', /^500 /],
      ['EPSV 7', /^522 /],
      ['PBSZ 0', /^503 /],
      ['PROT P', /^503 /],
      ['AUTH TLS', /^502 /],
      ['CCC', /^502 /],
      ['LPRT 4,4,127,0,0,1,2,4,1', /^502 /],
      ['12345', /^500 /],
      [Buffer.from('RETR a\0b\r\n', 'latin1'), /^500 /],
      [`NOOP ${'x'.repeat(10_000)}`, /^500 /],
      ['USER anonymous', /^230 /],
      ['PASS hunter2-secret', /^230 /],
      ['EPSV ALL', /^200 /],
      ['PASV', /^503 /],
      ['FEAT', /^211[- ]/],
      ['NOOP', /^200 /],
    ];
    for (const [cmd, want] of expect) {
      if (typeof cmd === 'string') await c.send(cmd);
      else await c.sendRaw(cmd);
      assert.match(await c.reply(), want, String(cmd).slice(0, 40));
    }
    await c.send('QUIT');
    assert.match(await c.reply(), /^221 /);
    assert.ok(lines.length > 0);
    assert.ok(!lines.join('').includes('hunter2-secret'), 'a password reached the log');
  });
});
