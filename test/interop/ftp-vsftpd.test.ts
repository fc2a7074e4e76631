/**
 * The FTP gateway against Debian's vsftpd (TLS with require_ssl_reuse=YES) with lftp and curl as
 * clients: 50 MB byte-identical both ways in every data mode and every TLS style; EICAR and zipped
 * EICAR refused both ways with nothing stored; server down; data connections from a foreign address
 * refused; the passive port range honoured.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { registry } from '../../src/admin/metrics.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import {
  curlArgs,
  type DataMode,
  FtpControl,
  type FtpGatewayUnderTest,
  lftpSettings,
  runClient,
  startFtpGateway,
  startFtpGatewayFor,
} from '../helpers/ftp-gateway.js';
import { startVsftpd, type Vsftpd } from '../helpers/ftp-vsftpd.js';
import { peer } from '../helpers/peers.js';
import { TestCa } from '../helpers/pki.js';
import { buildZip } from '../helpers/zipwriter.js';

type Style = 'explicit' | 'implicit' | 'none';

const dir = mkdtempSync(join(tmpdir(), 'scangate-ftp-'));
const BIG = join(dir, 'big.bin');
let big: Buffer;
let ca: TestCa;
let scanner: Scanner;
const servers = new Map<Style, Vsftpd>();
const cleanups: (() => Promise<void>)[] = [];

/** Completed handshakes of the 'files' listener by side, from the process-wide metrics registry. */
async function handshakes(): Promise<Record<string, number>> {
  const metric = registry.getSingleMetric('scangate_tls_handshakes_total');
  const out: Record<string, number> = {};
  for (const v of (await metric?.get())?.values ?? [])
    if (v.labels.listener === 'files') out[String(v.labels.side)] = v.value;
  return out;
}

function havePeers(t: import('node:test').TestContext): boolean {
  return !!(peer(t, 'vsftpd') && peer(t, 'lftp') && peer(t, 'curl'));
}

before(async () => {
  big = randomBytes(50 * 1024 * 1024);
  writeFileSync(BIG, big);
  ca = await TestCa.create();
  scanner = await createBuiltinScanner();
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  for (const s of servers.values()) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

async function server(style: Style): Promise<Vsftpd> {
  let s = servers.get(style);
  if (!s) {
    s = await startVsftpd({ tls: style, ca });
    servers.set(style, s);
  }
  return s;
}

async function gateway(
  client: Style,
  upstream: Style,
  extra: Record<string, unknown> = {},
): Promise<{ gw: FtpGatewayUnderTest; vs: Vsftpd }> {
  const vs = await server(upstream);
  const gw = await startFtpGatewayFor(vs, {
    dir: mkdtempSync(join(dir, 'gw-')),
    scanner,
    tls: { client, upstream },
    passivePorts: '46000-46199',
    listener: extra,
  });
  cleanups.push(() => gw.close());
  return { gw, vs };
}

function lftp(gw: FtpGatewayUnderTest, client: Style, mode: DataMode, commands: string) {
  const scheme = client === 'implicit' ? 'ftps' : 'ftp';
  const script = `${lftpSettings({ tls: client, mode, caFile: gw.caFile })}open -u anonymous,secret-pw ${scheme}://127.0.0.1:${gw.port}; ${commands}`;
  return runClient('lftp', ['-c', script]);
}

describe('FTP gateway with vsftpd (require_ssl_reuse=YES)', { concurrency: false }, () => {
  const matrix: { client: Style; upstream: Style; mode: DataMode; tool: 'lftp' | 'curl' }[] = [
    { client: 'explicit', upstream: 'explicit', mode: 'pasv', tool: 'lftp' },
    { client: 'explicit', upstream: 'explicit', mode: 'epsv', tool: 'curl' },
    { client: 'explicit', upstream: 'explicit', mode: 'port', tool: 'lftp' },
    { client: 'explicit', upstream: 'explicit', mode: 'eprt', tool: 'lftp' },
    { client: 'implicit', upstream: 'explicit', mode: 'pasv', tool: 'curl' },
    { client: 'implicit', upstream: 'explicit', mode: 'eprt', tool: 'lftp' },
    { client: 'explicit', upstream: 'implicit', mode: 'epsv', tool: 'lftp' },
    { client: 'none', upstream: 'none', mode: 'port', tool: 'curl' },
    { client: 'none', upstream: 'none', mode: 'epsv', tool: 'lftp' },
  ];
  for (const m of matrix) {
    test(`50 MB up and down, client ${m.client} / server ${m.upstream}, ${m.mode.toUpperCase()}, ${m.tool}`, async (t) => {
      if (!havePeers(t)) return;
      const { gw, vs } = await gateway(m.client, m.upstream);
      const name = `big-${m.client}-${m.upstream}-${m.mode}-${m.tool}.bin`;
      const back = join(dir, `back-${name}`);
      if (m.tool === 'lftp') {
        const r = await lftp(gw, m.client, m.mode, `put ${BIG} -o /pub/${name}; get /pub/${name} -o ${back}`);
        assert.equal(r.code, 0, r.stderr);
      } else {
        const base = { port: gw.port, tls: m.client, mode: m.mode, caFile: gw.caFile };
        const up = await runClient('curl', [...curlArgs({ ...base, path: `/pub/${name}` }), '-T', BIG]);
        assert.equal(up.code, 0, up.stderr);
        const down = await runClient('curl', [...curlArgs({ ...base, path: `/pub/${name}` }), '-o', back]);
        assert.equal(down.code, 0, down.stderr);
      }
      assert.ok(readFileSync(join(vs.uploadDir, name)).equals(big), 'stored file differs');
      assert.ok(readFileSync(back).equals(big), 'downloaded file differs');
      rmSync(join(vs.uploadDir, name));
      rmSync(back);
    });
  }

  test('every TLS handshake, control and data, both legs, is counted in /metrics', async (t) => {
    if (!havePeers(t)) return;
    const { gw } = await gateway('explicit', 'explicit');
    const was = await handshakes();
    const small = join(dir, 'metrics-small.bin');
    writeFileSync(small, randomBytes(4096));
    const r = await lftp(
      gw,
      'explicit',
      'pasv',
      `put ${small} -o /pub/metrics-small.bin; get /pub/metrics-small.bin -o ${small}.back`,
    );
    assert.equal(r.code, 0, r.stderr);
    const now = await handshakes();
    const delta = (side: string) => (now[side] ?? 0) - (was[side] ?? 0);
    // The control connection, then one data connection for the STOR and one for the RETR, each side
    // of the gateway (lftp may list once more; never fewer).
    assert.ok(delta('client') >= 3, `client handshakes: ${delta('client')}`);
    assert.ok(delta('upstream') >= 3, `upstream handshakes: ${delta('upstream')}`);
  });

  test('server leg in active mode (EPRT toward vsftpd) while the client uses PASV', async (t) => {
    if (!havePeers(t)) return;
    const { gw, vs } = await gateway('explicit', 'explicit', { upstreamData: 'active' });
    const data = randomBytes(300_000);
    const src = join(dir, 'active-src.bin');
    writeFileSync(src, data);
    const back = join(dir, 'active-back.bin');
    const r = await lftp(
      gw,
      'explicit',
      'pasv',
      `put ${src} -o /pub/active.bin; get /pub/active.bin -o ${back}`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(join(vs.uploadDir, 'active.bin')).equals(data));
    assert.ok(readFileSync(back).equals(data));
  });

  test('parallel sessions and an IPv6 client (EPSV over ::1) keep every file intact', async (t) => {
    if (!havePeers(t)) return;
    const vs = await server('explicit');
    const gw = await startFtpGateway({
      dir: mkdtempSync(join(dir, 'gw-')),
      scanner,
      upstreamCa: [vs.caFile],
      listener: {
        listen: '[::1]:0',
        upstream: `127.0.0.1:${vs.port}`,
        // The client dials ::1, which the server's certificate does not name: tls.name sets the leaf.
        tls: { client: 'explicit', upstream: 'explicit', name: '::1' },
        passivePorts: '46200-46299',
      },
    });
    cleanups.push(() => gw.close());
    const files = Array.from({ length: 4 }, (_, i) => ({
      name: `par-${i}.bin`,
      data: randomBytes(1_000_000 + i),
    }));
    await Promise.all(
      files.map(async (f) => {
        const src = join(dir, f.name);
        writeFileSync(src, f.data);
        const url = `ftp://[::1]:${gw.port}/pub/${f.name}`;
        const tls = ['-sS', '-g', '--ssl-reqd', '--cacert', gw.caFile];
        const up = await runClient('curl', [...tls, url, '-T', src]);
        assert.equal(up.code, 0, up.stderr);
        const down = await runClient('curl', [...tls, url, '-o', `${src}.back`]);
        assert.equal(down.code, 0, down.stderr);
        assert.ok(readFileSync(`${src}.back`).equals(f.data));
        assert.ok(readFileSync(join(vs.uploadDir, f.name)).equals(f.data));
      }),
    );
  });

  for (const [label, payload] of [
    ['EICAR', EICAR],
    ['zipped EICAR', buildZip([{ name: 'docs/eicar.com', data: EICAR }])],
  ] as const) {
    test(`${label} upload gets 550 and nothing is stored; placed on the server it cannot be downloaded`, async (t) => {
      if (!havePeers(t)) return;
      const { gw, vs } = await gateway('explicit', 'explicit');
      const file = join(dir, `${label.replace(' ', '-')}.bin`);
      writeFileSync(file, payload);
      const name = `${label.replace(' ', '-')}.bin`;
      const base = { port: gw.port, tls: 'explicit' as const, mode: 'epsv' as const, caFile: gw.caFile };
      const up = await runClient('curl', [...curlArgs({ ...base, path: `/pub/${name}` }), '-T', file, '-v']);
      assert.notEqual(up.code, 0);
      assert.match(up.stderr, new RegExp(`< 550 .*${EICAR_NAME}`));
      assert.equal(existsSync(join(vs.uploadDir, name)), false, 'infected upload reached the server');

      writeFileSync(join(vs.uploadDir, name), payload, { mode: 0o644 });
      const back = join(dir, `dl-${name}`);
      const down = await runClient('lftp', [
        '-c',
        `${lftpSettings({ tls: 'explicit', mode: 'pasv', caFile: gw.caFile })}open -u anonymous,x ftp://127.0.0.1:${gw.port}; get /pub/${name} -o ${back}`,
      ]);
      assert.notEqual(down.code, 0);
      assert.match(down.stderr, /550/);
      assert.ok(!existsSync(back) || readFileSync(back).length === 0, 'client received infected bytes');
      const verdicts = gw.events.events.filter((e) => e.kind === 'verdict');
      assert.equal(verdicts.length, 2);
      for (const v of verdicts) {
        assert.equal(v.signature, EICAR_NAME);
        assert.equal(v.action, 'blocked');
        assert.equal(v.protocol, 'ftp');
      }
      assert.ok(!JSON.stringify(gw.events.events).includes('secret-pw'));
    });
  }

  test('server down: the client is reset and never sees a 220; with unreachable: 421 it gets 421', async () => {
    const g = await startFtpGateway({
      dir: mkdtempSync(join(dir, 'gw-')),
      scanner,
      listener: { upstream: '127.0.0.1:1', tls: { client: 'none', upstream: 'none' } },
    });
    cleanups.push(() => g.close());
    const first = await readUntilClose(connect(g.port, '127.0.0.1'));
    assert.equal(first.data, '');
    assert.equal(first.error, 'ECONNRESET');
    const g421 = await startFtpGateway({
      dir: mkdtempSync(join(dir, 'gw-')),
      scanner,
      listener: { upstream: '127.0.0.1:1', tls: { client: 'none', upstream: 'none' }, unreachable: '421' },
    });
    cleanups.push(() => g421.close());
    const second = await readUntilClose(connect(g421.port, '127.0.0.1'));
    assert.match(second.data, /^421 /);
    assert.doesNotMatch(second.data, /220/);
  });

  test('a data connection from another address is refused; the port range is honoured; PROT P data resumes the control TLS session', async (t) => {
    if (!havePeers(t)) return;
    const { gw } = await gateway('explicit', 'explicit', { passivePorts: '46300-46309' });
    const c = await FtpControl.open(gw.port);
    assert.match(await c.reply(), /^220 /);
    await c.send('AUTH TLS');
    assert.match(await c.reply(), /^234 /);
    await c.startTls(gw.caFile);
    for (const [cmd, want] of [
      ['USER anonymous', /^230 /],
      ['PBSZ 0', /^200 /],
      ['PROT C', /^200 /],
      ['TYPE I', /^200 /],
    ] as const) {
      await c.send(cmd);
      assert.match(await c.reply(), want);
    }
    await c.send('EPSV');
    const epsv = await c.reply();
    const port = Number(/\(\|\|\|(\d+)\|\)/.exec(epsv)![1]);
    assert.ok(port >= 46300 && port <= 46309, `port ${port} outside the range`);
    // 127.0.0.2 is loopback too, but not the control connection's address.
    const foreign = await readUntilClose(connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }));
    assert.equal(foreign.data, '');
    assert.ok(gw.events.events.some((e) => e.kind === 'data-connection-refused'));
    // The rightful client still gets its listing on the same port.
    const own = readUntilClose(connect({ host: '127.0.0.1', port }));
    await c.send('LIST /pub');
    assert.match(await c.reply(), /^150 /);
    assert.match(await c.reply(), /^226 /);
    assert.equal((await own).error, undefined);
    // A PROT P data connection may resume the control connection's TLS session (clients such as
    // FileZilla insist, as vsftpd does toward us).
    await c.send('PROT P');
    assert.match(await c.reply(), /^200 /);
    await c.send('EPSV');
    const p3 = Number(/\(\|\|\|(\d+)\|\)/.exec(await c.reply())![1]);
    const data = tlsConnect({
      host: '127.0.0.1',
      port: p3,
      ca: readFileSync(gw.caFile),
      session: c.session,
      checkServerIdentity: () => undefined,
    });
    data.on('error', () => {});
    await c.send('LIST /pub');
    await new Promise((r) => data.once('secureConnect', r));
    assert.ok(data.isSessionReused(), 'data connection did not resume the control session');
    data.resume();
    assert.match(await c.reply(), /^150 /);
    assert.match(await c.reply(), /^226 /);
    await c.send('PASV');
    const pasv = await c.reply();
    const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(pasv)!;
    const p2 = Number(m[5]) * 256 + Number(m[6]);
    assert.ok(p2 >= 46300 && p2 <= 46309);
    await c.send('PORT 10,9,8,7,200,1');
    assert.match(await c.reply(), /^500 /, 'PORT to a third party must be refused (FTP bounce)');
    c.close();
  });
});

function readUntilClose(s: Socket): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    let data = '';
    let error: string | undefined;
    s.on('data', (d: Buffer) => {
      data += d.toString('latin1');
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code;
    });
    s.on('close', () => resolve({ data, error }));
    setTimeout(() => s.destroy(), 10_000).unref();
  });
}
