/**
 * The explicit proxy as a service (startHttpListener) with real curl: CONNECT discipline (502 at
 * once for a refused origin), HTTPS interception with the engine judging decrypted bodies, the
 * failure pages for untrusted origins, passthrough hosts and non-HTTP tunnels spliced byte-exact.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type HttpListenerConfig } from '../../src/config/schema.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { startHttpListener } from '../../src/protocols/http/index.js';
import { createTlsRuntime } from '../../src/tls/runtime.js';
import { EICAR } from '../helpers/eicar.js';
import { peer } from '../helpers/peers.js';
import {
  bigStream,
  closedPort,
  createTestPki,
  curl,
  type Origin,
  sha256Of,
  splitHead,
  startOrigin,
  type TestPki,
} from './http-origin.js';

let dir: string;
let scanner: Scanner;
let pki: TestPki;
let plain: Origin;
let secure: Origin;
let expired: Origin;
let wrongName: Origin;
let untrusted: Origin;
let proxy: RunningService;
let proxyPort: number;
let caFile: string;
const events = new MemoryEventSink();

async function startService(overrides: Record<string, unknown> = {}, tls: Record<string, unknown> = {}) {
  const config = configSchema.parse({
    dataDir: dir,
    tls: { upstream: { ca: [pki.caFile] }, passthrough: ['pinned.localhost'], ...tls },
    listeners: [
      {
        name: 'web',
        protocol: 'http',
        listen: '127.0.0.1:0',
        holdLimit: '2MB',
        keepBack: '64KB',
        ...overrides,
      },
    ],
  });
  const runtime = await createTlsRuntime(config, silentLogger, events);
  const service = await startHttpListener(config.listeners[0] as HttpListenerConfig, {
    config,
    scanner,
    logger: silentLogger,
    events,
    tls: runtime,
  });
  return { service, runtime, port: (service.address as AddressInfo).port };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-httpx-'));
  scanner = await createBuiltinScanner();
  pki = await createTestPki(dir);
  plain = await startOrigin();
  secure = await startOrigin({ tls: await pki.server(['localhost', 'pinned.localhost']) });
  expired = await startOrigin({ tls: await pki.server(['localhost'], { expired: true }) });
  wrongName = await startOrigin({ tls: await pki.server(['other.example']) });
  untrusted = await startOrigin({ tls: await pki.selfSigned(['localhost']) });
  const s = await startService();
  proxy = s.service;
  proxyPort = s.port;
  caFile = join(dir, 'scangate-ca.pem');
  writeFileSync(caFile, s.runtime.ca.certPem);
});

after(async () => {
  await proxy.close(100);
  await Promise.all([plain, secure, expired, wrongName, untrusted].map((o) => o.close()));
  rmSync(dir, { recursive: true, force: true });
});

const proxyArgs = () => ['-x', `http://127.0.0.1:${proxyPort}`];
const httpsArgs = () => [
  ...proxyArgs(),
  '--cacert',
  caFile,
  '--resolve',
  `localhost:${secure.port}:127.0.0.1`,
];

function rawConnect(request: string): Promise<{ text: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = connect(proxyPort, '127.0.0.1');
    let text = '';
    let ms = 0;
    s.on('data', (d) => {
      if (!text) ms = performance.now() - t0;
      text += d.toString('latin1');
    });
    s.on('close', () => resolve({ text, ms }));
    s.on('error', () => {});
    s.write(request);
  });
}

describe('explicit proxy: CONNECT discipline', () => {
  it('answers CONNECT to a closed port with 502 naming the refusal, within 100 ms', async () => {
    const port = await closedPort();
    const r = await rawConnect(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    assert.match(r.text, /^HTTP\/1\.1 502 /);
    assert.match(r.text, /refused/);
    assert.ok(r.ms < 100, `answered after ${r.ms.toFixed(1)} ms`);
  });

  it('curl sees the 502 for an https URL whose origin is down', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const port = await closedPort();
    const r = await curl(bin, [...proxyArgs(), '-v', `https://127.0.0.1:${port}/`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /502/);
  });

  it('splices a BitTorrent handshake through CONNECT byte-exact, unscanned', async () => {
    const received: Buffer[] = [];
    const reply = Buffer.concat([Buffer.from([19]), Buffer.from('BitTorrent protocol'), randomBytes(48)]);
    const peerServer = createServer((s: Socket) => {
      s.on('data', (d) => {
        received.push(d);
        if (Buffer.concat(received).length >= 68) s.end(reply);
      });
    });
    await new Promise<void>((r) => peerServer.listen(0, '127.0.0.1', r));
    const port = (peerServer.address() as AddressInfo).port;
    const hello = Buffer.concat([
      Buffer.from([19]),
      Buffer.from('BitTorrent protocol'),
      Buffer.alloc(8),
      randomBytes(40),
    ]);
    const before = events.events.length;
    const got = await new Promise<Buffer>((resolve) => {
      const s = connect(proxyPort, '127.0.0.1');
      let buf = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0 && !s.readableEnded && buf.subarray(0, end).includes('200') && buf.length === end + 4)
          s.write(hello);
      });
      s.on('close', () => resolve(buf));
      s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    });
    peerServer.close();
    const head = got.indexOf('\r\n\r\n') + 4;
    assert.match(got.subarray(0, head).toString(), /^HTTP\/1\.1 200 /);
    assert.ok(got.subarray(head).equals(reply), 'reply byte-exact');
    assert.ok(Buffer.concat(received).equals(hello), 'handshake byte-exact');
    const ev = events.events.slice(before).find((e) => e.kind === 'splice');
    assert.equal(ev?.action, 'allowed');
    assert.match(ev?.reason ?? '', /unknown/);
  });
});

describe('explicit proxy: protocols that are not HTTP', () => {
  /** A server that speaks first (SSH/SMTP style) and echoes one line back. */
  async function bannerServer() {
    const srv = createServer((s: Socket) => {
      s.write('SSH-2.0-OpenSSH_9.6\r\n');
      s.on('data', (d) => s.end(Buffer.concat([Buffer.from('echo:'), d])));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return { srv, port: (srv.address() as AddressInfo).port };
  }

  function tunnel(
    port: number,
    proxyAt: number,
    onBanner: (s: Socket, data: Buffer) => void,
  ): Promise<Buffer> {
    return new Promise((resolve) => {
      const s = connect(proxyAt, '127.0.0.1');
      let buf = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        onBanner(s, buf);
      });
      s.on('close', () => resolve(buf));
      s.on('error', () => {});
      s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    });
  }

  it('splices a server-speaks-first protocol without waiting for the client', async () => {
    const { srv, port } = await bannerServer();
    let sent = false;
    const got = await tunnel(port, proxyPort, (s, buf) => {
      if (!sent && buf.includes('SSH-2.0')) {
        sent = true;
        s.write('SSH-2.0-client\r\n');
      }
    });
    srv.close();
    assert.match(
      got.toString(),
      /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nSSH-2\.0-OpenSSH_9\.6\r\necho:SSH-2\.0-client\r\n$/,
    );
  });

  it('closes tunnels of unknown protocols when unknownProtocol is block', async () => {
    const blocking = await startService({ name: 'strict', unknownProtocol: 'block' });
    try {
      const { srv, port } = await bannerServer();
      const before = events.events.length;
      const got = await tunnel(port, blocking.port, () => {});
      srv.close();
      assert.doesNotMatch(got.toString(), /SSH-2\.0/);
      const ev = events.events.slice(before).find((e) => e.kind === 'splice');
      assert.equal(ev?.action, 'blocked');
      assert.equal(ev?.listener, 'strict');
    } finally {
      await blocking.service.close(100);
    }
  });
});

describe('explicit proxy: service lifecycle', () => {
  it('drops a connection that stalls mid-body after idleTimeout', async () => {
    const s = await startService({ name: 'idle', idleTimeout: '300ms' });
    try {
      const t0 = performance.now();
      const closed = await new Promise<number>((resolve) => {
        const c = connect(s.port, '127.0.0.1');
        c.on('close', () => resolve(performance.now() - t0));
        c.on('error', () => {});
        c.write(
          `POST http://127.0.0.1:${plain.port}/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part`,
        );
      });
      assert.ok(closed >= 250 && closed < 3000, `closed after ${closed.toFixed(0)} ms`);
    } finally {
      await s.service.close(100);
    }
  });

  it('close() ends idle keep-alive connections at once instead of waiting for the deadline', async () => {
    const s = await startService({ name: 'closing' });
    const c = connect(s.port, '127.0.0.1');
    c.on('error', () => {});
    const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
    await new Promise<void>((resolve) => {
      c.once('data', () => resolve());
      c.write(`GET http://127.0.0.1:${plain.port}/clean.txt HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
    const t0 = performance.now();
    await s.service.close(10_000);
    await closed;
    assert.ok(performance.now() - t0 < 2000);
  });
});

describe('explicit proxy: HTTPS interception', () => {
  it('blocks EICAR inside TLS with 403 and the verdict header; clean objects pass', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const before = events.events.length;
    const r = await curl(bin, [...httpsArgs(), '-D', '-', `https://localhost:${secure.port}/eicar.com`]);
    assert.equal(r.code, 0, r.stderr);
    const { status, headers, body } = splitHead(r.stdout);
    assert.equal(status, 403);
    assert.match(headers, /X-Scangate-Verdict: infected; signature="Eicar-Signature"/i);
    assert.match(body.toString(), /Eicar-Signature/);
    const ev = events.events.slice(before).find((e) => e.kind === 'verdict');
    assert.equal(ev?.protocol, 'https');
    assert.equal(ev?.object, `https://localhost:${secure.port}/eicar.com`);
    const gz = await curl(bin, [...httpsArgs(), '-D', '-', `https://localhost:${secure.port}/eicar.gz`]);
    assert.equal(splitHead(gz.stdout).status, 403);
    const ok = await curl(bin, [...httpsArgs(), `https://localhost:${secure.port}/clean.txt`]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n');
  });

  it('blocks an EICAR upload over HTTPS before the origin receives it', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const file = join(dir, 'eicar-up.txt');
    writeFileSync(file, EICAR);
    const seen = secure.requests.length;
    const r = await curl(bin, [
      ...httpsArgs(),
      '-D',
      '-',
      '-F',
      `file=@${file}`,
      `https://localhost:${secure.port}/upload`,
    ]);
    assert.equal(splitHead(r.stdout).status, 403);
    assert.equal(secure.requests.length, seen);
  });

  it('delivers a clean 100 MB object over intercepted TLS byte-identical', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const size = 100 * 1024 * 1024;
    const expected = await sha256Of(bigStream(size));
    const r = await curl(bin, [...httpsArgs(), `https://localhost:${secure.port}/big?size=${size}`], {
      sink: sha256Of,
      timeoutMs: 180_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.sinkResult, expected);
  });

  it('keeps one client and one origin connection for 100 requests', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const conns = secure.connections;
    const urls = Array.from({ length: 100 }, () => `https://localhost:${secure.port}/clean.txt`);
    const r = await curl(bin, [...httpsArgs(), '-w', '%{num_connects}\\n', ...urls]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.equal(text.split('hello, clean world').length - 1, 100);
    const connects = text.match(/^\d+$/gm)!.map(Number);
    assert.equal(
      connects.reduce((a, b) => a + b, 0),
      1,
    );
    assert.equal(secure.connections - conns, 1);
  });

  for (const [label, get, reason] of [
    ['an expired certificate', () => expired, /expired/i],
    ['a certificate for another name', () => wrongName, /certificate is for other\.example/],
    ['an untrusted issuer', () => untrusted, /trust|self.signed|issuer|verify/i],
  ] as const) {
    it(`answers 502 naming the reason for an origin with ${label}`, async (t) => {
      const bin = peer(t, 'curl');
      if (!bin) return;
      const o = get();
      const r = await curl(bin, [
        ...proxyArgs(),
        '--cacert',
        caFile,
        '--resolve',
        `localhost:${o.port}:127.0.0.1`,
        '-D',
        '-',
        `https://localhost:${o.port}/clean.txt`,
      ]);
      const { status, body } = splitHead(r.stdout);
      assert.equal(status, 502, r.stderr);
      assert.match(body.toString(), reason, body.toString());
    });
  }

  it('passes pinned hosts through: the client sees the origin certificate, not ours', async () => {
    const cert = await new Promise<{ issuer: string }>((resolve, reject) => {
      const s = connect(proxyPort, '127.0.0.1');
      s.once('data', (d: Buffer) => {
        assert.match(d.toString(), /^HTTP\/1\.1 200/);
        const t = tlsConnect({ socket: s, servername: 'pinned.localhost', ca: [pki.caPem] }, () => {
          const c = t.getPeerCertificate();
          t.destroy();
          resolve({ issuer: String(c.issuer.CN ?? '') });
        });
        t.on('error', reject);
      });
      s.write(`CONNECT 127.0.0.1:${secure.port} HTTP/1.1\r\nHost: 127.0.0.1:${secure.port}\r\n\r\n`);
    });
    assert.equal(cert.issuer, pki.caName);
  });
});
