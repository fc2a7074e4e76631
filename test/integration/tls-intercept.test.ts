/**
 * interceptTls end to end with real clients (curl, openssl s_client, Node, raw sockets) against
 * in-process origins: the client sees our leaf with the origin's names; a down or untrusted origin
 * means the client never gets a ServerHello; ALPN is mirrored; a client that rejects our certificate
 * gets its host passed through afterwards.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { MemoryEventSink } from '../../src/admin/events.js';
import { silentLogger } from '../../src/logger.js';
import { createTcpListener, type TcpListener } from '../../src/net/listener.js';
import { resetConnection, splice } from '../../src/net/splice.js';
import { CertificateAuthority } from '../../src/tls/ca.js';
import { type Intercepted, interceptTls } from '../../src/tls/intercept.js';
import { LeafMinter } from '../../src/tls/leaf.js';
import { PassthroughPolicy } from '../../src/tls/passthrough.js';
import type { TlsRuntime } from '../../src/tls/runtime.js';
import { peer } from '../helpers/peers.js';
import { startTlsOrigin, TestCa, type TlsOrigin, writePem } from '../helpers/pki.js';

const execFileP = promisify(execFile);
/** Runs a program with stdin closed at once (openssl s_client would otherwise wait for input). */
function run(cmd: string, args: string[]) {
  const p = execFileP(cmd, args);
  p.child.stdin?.end();
  return p;
}
const dir = mkdtempSync(join(tmpdir(), 'sg-intercept-'));
let originCa: TestCa;
let otherCa: TestCa;
let runtime: TlsRuntime;
let ourCaFile: string;
let otherCaFile: string;
const events = new MemoryEventSink();
const closers: (() => Promise<void> | void)[] = [];

interface Gateway {
  port: number;
  results: (Intercepted | Error)[];
}

/**
 * A minimal interception gateway: each connection is intercepted toward `target`, then spliced.
 * `consumeHead` reads the first chunk itself and hands it over as `head` (as the HTTP proxy does).
 */
async function gateway(
  targetPort: number,
  opts: { alpn?: string[]; consumeHead?: boolean; timeoutMs?: number } = {},
): Promise<Gateway> {
  const results: (Intercepted | Error)[] = [];
  const listener: TcpListener = await createTcpListener({
    name: 'test',
    listen: '127.0.0.1:0',
    maxConnections: 50,
    logger: silentLogger,
    onConnection: async (client: Socket) => {
      client.on('error', () => {});
      let head: Buffer | undefined;
      if (opts.consumeHead) {
        head = await new Promise<Buffer>((r) => client.once('data', (d: Buffer) => r(d)));
        client.pause();
      }
      try {
        const pair = await interceptTls({
          client,
          ...(head ? { head } : {}),
          target: { host: '127.0.0.1', port: targetPort },
          runtime,
          ...(opts.alpn ? { alpn: opts.alpn } : {}),
          logger: silentLogger,
          events,
          listener: 'test',
          protocol: 'https',
          timeoutMs: opts.timeoutMs ?? 3000,
        });
        results.push(pair);
        pair.client.on('error', () => {});
        pair.upstream.on('error', () => {});
        await splice(pair.client, pair.upstream, { idleTimeoutMs: 5000 });
      } catch (e) {
        results.push(e as Error);
        // Mirror the upstream failure: the client gets a reset, never a handshake.
        resetConnection(client);
      }
    },
  });
  closers.push(() => listener.close(100));
  return { port: (listener.address as AddressInfo).port, results };
}

async function origin(alpn?: string[]): Promise<TlsOrigin> {
  const cert = await originCa.issue({
    dnsNames: ['origin.test', '*.origin.test'],
    ipAddresses: ['127.0.0.1'],
  });
  const o = await startTlsOrigin(cert, alpn ? { alpn } : {});
  closers.push(() => o.close());
  return o;
}

before(async () => {
  originCa = await TestCa.create('origin CA');
  otherCa = await TestCa.create('some other CA');
  const { ca } = await CertificateAuthority.loadOrCreate({ dataDir: join(dir, 'data') });
  runtime = {
    ca,
    minter: new LeafMinter(ca),
    passthrough: new PassthroughPolicy([], 60_000, silentLogger, events),
    upstream: { verify: true, extraCa: [originCa.certPem] },
  };
  ourCaFile = writePem(dir, 'ours.crt', ca.certPem);
  otherCaFile = writePem(dir, 'other.crt', otherCa.certPem);
});

after(async () => {
  for (const c of closers.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

describe('interceptTls', () => {
  test('curl --cacert <our CA>: the response comes from the origin through our leaf', async (t) => {
    const curl = peer(t, 'curl');
    if (!curl) return;
    const o = await origin(['http/1.1']);
    const g = await gateway(o.port);
    const { stdout, stderr } = await run(curl, [
      '-sS',
      '-v',
      '--cacert',
      ourCaFile,
      '--resolve',
      `www.origin.test:${g.port}:127.0.0.1`,
      `https://www.origin.test:${g.port}/`,
    ]);
    assert.match(stdout, /^origin sni=www\.origin\.test alpn=http\/1\.1/);
    assert.match(stderr, /issuer: CN=scangate interception CA/);
    assert.match(stderr, /subjectAltName: host "www\.origin\.test" matched cert's "\*\.origin\.test"/);
    const r = g.results[0] as Intercepted;
    assert.deepEqual(r.names.dnsNames.sort(), ['*.origin.test', 'origin.test', 'www.origin.test']);
  });

  test("openssl s_client sees our CA as issuer and the origin's SANs", async (t) => {
    const openssl = peer(t, 'openssl');
    if (!openssl) return;
    const o = await origin();
    const g = await gateway(o.port);
    const { stdout } = await run(openssl, [
      's_client',
      '-connect',
      `127.0.0.1:${g.port}`,
      '-servername',
      'origin.test',
      '-CAfile',
      ourCaFile,
      '-verify_return_error',
      '-showcerts',
    ]).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
    assert.match(stdout, /Verify return code: 0 \(ok\)/);
    assert.match(stdout, /issuer=CN ?= ?scangate interception CA/);
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(stdout)![0];
    const text = (
      await run(openssl, ['x509', '-noout', '-ext', 'subjectAltName', '-in', writePem(dir, 'seen.pem', leaf)])
    ).stdout;
    assert.match(text, /DNS:origin\.test/);
    assert.match(text, /DNS:\*\.origin\.test/);
    assert.match(text, /IP Address:127\.0\.0\.1/);
  });

  test('head bytes already consumed by the caller are replayed to the TLS layer', async () => {
    const o = await origin();
    const g = await gateway(o.port, { consumeHead: true });
    const body = await nodeGet(g.port, 'origin.test', runtime.ca.certPem);
    assert.match(body, /origin sni=origin\.test/);
  });

  test('ALPN: the client gets what the origin chose; a caller restricted to http/1.1 narrows the offer', async () => {
    const o = await origin(['h2', 'http/1.1']);
    const free = await gateway(o.port);
    assert.equal(await alpnSeen(free.port, ['h2', 'http/1.1']), 'h2');
    const narrowed = await gateway(o.port, { alpn: ['http/1.1'] });
    assert.equal(await alpnSeen(narrowed.port, ['h2', 'http/1.1']), 'http/1.1');
    const none = await origin();
    const g3 = await gateway(none.port);
    assert.equal(await alpnSeen(g3.port, ['h2', 'http/1.1']), false);
  });

  test('origin down: the client is reset and never receives a byte (no ServerHello)', async () => {
    const o = await origin();
    const port = o.port;
    await o.close();
    const g = await gateway(port);
    const r = await rawHello(g.port);
    assert.equal(r.bytes, 0, 'no byte of a ServerHello arrived');
    assert.equal(r.error, 'ECONNRESET');
    assert.equal((g.results[0] as { code?: string }).code, 'ERR_UPSTREAM_REFUSED');
  });

  test('untrusted origin: likewise reset before any ServerHello', async () => {
    const cert = await otherCa.issue({ dnsNames: ['origin.test'] });
    const o = await startTlsOrigin(cert);
    closers.push(() => o.close());
    const g = await gateway(o.port);
    const r = await rawHello(g.port);
    assert.equal(r.bytes, 0);
    assert.equal(r.error, 'ECONNRESET');
    assert.equal((g.results[0] as { code?: string }).code, 'ERR_UPSTREAM_CERT_UNTRUSTED');
  });

  test('pinning: a client that rejects our certificate (alert unknown_ca) makes the host pass through', async (t) => {
    const openssl = peer(t, 'openssl');
    if (!openssl) return;
    const o = await origin();
    const g = await gateway(o.port);
    const host = 'pinned.origin.test';
    assert.equal(runtime.passthrough.shouldPassthrough(host), false);
    const r = await run(openssl, [
      's_client',
      '-connect',
      `127.0.0.1:${g.port}`,
      '-servername',
      host,
      '-CAfile',
      otherCaFile,
      '-verify_return_error',
    ]).catch((e: { stdout: string; stderr: string; code: number }) => e);
    assert.notEqual((r as { code?: number }).code ?? 0, 0, 'openssl refused our certificate');
    await waitFor(() => g.results.length > 0);
    assert.equal((g.results[0] as { code?: string }).code, 'ERR_TLS_CLIENT_REJECTED_CERT');
    assert.equal(runtime.passthrough.shouldPassthrough(host), true);
    const ev = events.events.find((e) => e.kind === 'passthrough-learned' && e.object === host);
    assert.ok(ev, 'a passthrough-learned event');
    assert.equal(ev.listener, 'test');
    assert.match(ev.reason ?? '', /unknown_ca/);
  });

  test('curl without our CA (system store) also counts as a rejection', async (t) => {
    const curl = peer(t, 'curl');
    if (!curl) return;
    const o = await origin();
    const g = await gateway(o.port);
    const host = 'curl-pinned.origin.test';
    const r = await run(curl, [
      '-sS',
      '--resolve',
      `${host}:${g.port}:127.0.0.1`,
      `https://${host}:${g.port}/`,
    ]).catch((e: { code: number }) => e);
    assert.equal((r as { code?: number }).code, 60, 'curl: certificate problem');
    await waitFor(() => g.results.length > 0);
    assert.equal(runtime.passthrough.shouldPassthrough(host), true);
  });

  test('a client that is not speaking TLS gets a typed error, no upstream connection is made', async () => {
    const o = await origin();
    const g = await gateway(o.port);
    const s = netConnect(g.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\n\r\n');
    await waitFor(() => g.results.length > 0);
    assert.equal((g.results[0] as { code?: string }).code, 'ERR_TLS_CLIENT_HELLO');
    assert.equal(o.sockets.length, 0);
    s.destroy();
  });

  test('a client that stalls mid-handshake (never sends Finished) times out with a typed error', async () => {
    const o = await origin();
    const g = await gateway(o.port, { timeoutMs: 300 });
    const r = rawHello(g.port);
    await waitFor(() => g.results.length > 0);
    assert.equal((g.results[0] as { code?: string }).code, 'ERR_TLS_CLIENT_TIMEOUT');
    assert.ok((await r).bytes > 0, 'the ServerHello went out (upstream was fine)');
  });

  test('slowloris on the ClientHello: half a hello, then silence, is cut after the timeout', async () => {
    const o = await origin();
    const g = await gateway(o.port, { timeoutMs: 200 });
    const s = netConnect(g.port, '127.0.0.1');
    s.on('error', () => {});
    s.write(Buffer.from([22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]));
    await waitFor(() => g.results.length > 0);
    assert.equal((g.results[0] as { code?: string }).code, 'ERR_TLS_CLIENT_HELLO');
    assert.match((g.results[0] as Error).message, /incomplete ClientHello/);
    assert.equal(o.sockets.length, 0, 'no upstream connection for a client that never finished its hello');
    s.destroy();
  });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function nodeGet(port: number, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port, host: '127.0.0.1', servername, ca }, () =>
      s.write('GET / HTTP/1.1\r\n\r\n'),
    );
    let out = '';
    s.on('data', (d) => {
      out += d;
    });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

function alpnSeen(port: number, offers: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      { port, host: '127.0.0.1', servername: 'origin.test', ca: runtime.ca.certPem, ALPNProtocols: offers },
      () => {
        const p = s.alpnProtocol ?? false;
        s.destroy();
        resolve(p);
      },
    );
    s.on('error', reject);
  });
}

/** Sends a real ClientHello from a raw socket and reports what came back. */
function rawHello(port: number): Promise<{ bytes: number; error?: string }> {
  return new Promise((resolve) => {
    // Capture a genuine ClientHello by letting tls.connect write into a raw socket pair.
    const s = netConnect(port, '127.0.0.1');
    let bytes = 0;
    s.on('data', (d) => {
      bytes += d.length;
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ bytes, error: e.code }));
    s.on('close', () => resolve({ bytes }));
    s.on('connect', () => {
      const t = tlsConnect({
        socket: new PassThroughSocket(s) as unknown as Socket,
        servername: 'origin.test',
      });
      t.on('error', () => {});
    });
  });
}

/** A duplex that forwards writes to the raw socket but never feeds it the server's bytes (we count them). */
class PassThroughSocket extends Duplex {
  constructor(private readonly raw: Socket) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.raw.destroyed) cb();
    else this.raw.write(chunk, () => cb());
  }
  override _read(): void {}
}
