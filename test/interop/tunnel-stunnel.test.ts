/**
 * Issue 6, done-when 2: Debian's stunnel4 in client mode carries plain TCP to the tunnel in stream
 * mode; the gateway's PROXY v2 header tells the backend who the client is (certificate CN, subject,
 * DNS and URI SANs, fingerprint), and the test reads it at the backend. The same path through
 * `scangate tunnel connect` (our own client end) is checked alongside.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  decodeSslTlv,
  PP2_CLIENT_CERT_CONN,
  PP2_CLIENT_SSL,
  PP2_SUBTYPE_SSL_CN,
  PP2_SUBTYPE_SSL_VERSION,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_SCANGATE_DNS,
  PP2_TYPE_SCANGATE_SHA256,
  PP2_TYPE_SCANGATE_SUBJECT,
  PP2_TYPE_SCANGATE_URI,
  PP2_TYPE_SSL,
  type Pp2Header,
} from '../../src/protocols/tunnel/proxy-v2.js';
import { peer } from '../helpers/peers.js';
import { startTunnel, type TunnelUnderTest, until } from '../helpers/tunnel-gateway.js';
import { type EchoBackend, freePort, startEchoBackend } from '../helpers/tunnel-peers.js';
import { type IssuedCert, tunnelPki } from '../helpers/tunnel-pki.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** Connects to a local port, sends `text`, resolves with what comes back before the server closes. */
function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) s.end();
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

/** Waits until a local port accepts connections (a child process is starting). */
async function portOpen(port: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} never opened`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function tlvValues(h: Pp2Header, type: number): string[] {
  return h.tlvs.filter((t) => t.type === type).map((t) => t.value.toString('utf8'));
}

describe('tunnel stream mode with stunnel4 client mode and PROXY v2', () => {
  let pki: Awaited<ReturnType<typeof tunnelPki>>;
  let gw: TunnelUnderTest;
  let backend: EchoBackend;
  let alice: IssuedCert;
  const children: ChildProcess[] = [];

  before(async () => {
    pki = await tunnelPki();
    alice = await pki.ca.issue({
      commonName: 'alice',
      dns: ['alice.bank.example'],
      uri: ['spiffe://bank.example/payments/alice'],
    });
    pki.dir.write('alice.crt', alice.certPem);
    pki.dir.write('alice.key', alice.keyPem);
    backend = await startEchoBackend({ expectProxy: true });
    gw = await startTunnel({
      mode: 'stream',
      upstream: `127.0.0.1:${backend.port}`,
      tls: pki.files,
      allow: { uri: ['spiffe://bank.example/payments/*'] },
      proxyProtocol: true,
    });
  });
  after(async () => {
    for (const c of children) c.kill('SIGTERM');
    await gw?.close();
    await backend?.close();
    pki?.dir.cleanup();
  });

  function assertIdentity(h: Pp2Header): void {
    assert.equal(h.command, 'PROXY');
    assert.equal(h.family, 'TCP4');
    assert.equal(h.source?.address, '127.0.0.1');
    assert.equal(h.destination?.port, gw.port);
    const ssl = h.tlvs.find((t) => t.type === PP2_TYPE_SSL);
    assert.ok(ssl, 'PP2_TYPE_SSL present');
    const s = decodeSslTlv(ssl.value);
    assert.equal(s.client & (PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN), PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN);
    assert.equal(s.verify, 0);
    assert.equal(s.sub.find((t) => t.type === PP2_SUBTYPE_SSL_CN)?.value.toString(), 'alice');
    assert.match(s.sub.find((t) => t.type === PP2_SUBTYPE_SSL_VERSION)!.value.toString(), /^TLSv1\.[23]$/);
    assert.deepEqual(tlvValues(h, PP2_TYPE_SCANGATE_SUBJECT), ['CN=alice\nO=scangate tests']);
    assert.deepEqual(tlvValues(h, PP2_TYPE_SCANGATE_DNS), ['alice.bank.example']);
    assert.deepEqual(tlvValues(h, PP2_TYPE_SCANGATE_URI), ['spiffe://bank.example/payments/alice']);
    const fp = h.tlvs.find((t) => t.type === PP2_TYPE_SCANGATE_SHA256)!.value;
    assert.deepEqual(fp, createHash('sha256').update(new X509Certificate(alice.certPem).raw).digest());
  }

  it('stunnel4 (client = yes) reaches the backend, which reads the client identity from PROXY v2', async (t) => {
    const bin = peer(t, 'stunnel4');
    if (!bin) return;
    const local = await freePort();
    const conf = pki.dir.write(
      'stunnel.conf',
      [
        'foreground = yes',
        'debug = 4',
        `pid = ${pki.dir.path('stunnel.pid')}`,
        '[tunnel]',
        'client = yes',
        `accept = 127.0.0.1:${local}`,
        `connect = 127.0.0.1:${gw.port}`,
        `cert = ${pki.dir.path('alice.crt')}`,
        `key = ${pki.dir.path('alice.key')}`,
        `CAfile = ${pki.files.clientCa}`,
        'verifyChain = yes',
        'checkHost = localhost',
        'sni = localhost',
        '',
      ].join('\n'),
    );
    const child = spawn(bin, [conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let log = '';
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    await portOpen(local);
    const before = backend.headers.length;
    const echoed = await roundTrip(local, 'payment 1 via stunnel\n');
    assert.equal(echoed, 'payment 1 via stunnel\n', log);
    await until(() => backend.headers.length > before, 'the PROXY header at the backend');
    assertIdentity(backend.headers.at(-1)!);
    assert.equal(gw.events.events.length, 0, JSON.stringify(gw.events.events));
  });

  it('scangate tunnel connect does the same as stunnel client mode', async () => {
    const local = await freePort();
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'scangate.js'),
        'tunnel',
        'connect',
        '--listen',
        `127.0.0.1:${local}`,
        '--server',
        `127.0.0.1:${gw.port}`,
        '--servername',
        'localhost',
        '--cert',
        pki.dir.path('alice.crt'),
        '--key',
        pki.dir.path('alice.key'),
        '--ca',
        pki.files.clientCa,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SCANGATE_FROM_SOURCE: '1' } },
    );
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await portOpen(local);
    assert.match(out, /tunnel connect listening on 127\.0\.0\.1:\d+/);
    const before = backend.headers.length;
    const big = `${'x'.repeat(200_000)}\n`;
    assert.equal(await roundTrip(local, big), big, out);
    await until(() => backend.headers.length > before, 'the PROXY header at the backend');
    assertIdentity(backend.headers.at(-1)!);
    // SNI the client sent travels as PP2_TYPE_AUTHORITY.
    assert.deepEqual(tlvValues(backend.headers.at(-1)!, PP2_TYPE_AUTHORITY), ['localhost']);
  });
});
