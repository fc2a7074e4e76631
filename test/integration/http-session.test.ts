/**
 * The HTTP session (explicit proxy for http:// URLs) end to end with real curl, the real engine and
 * an in-process origin. The session is driven directly over a plain TCP server here; the listener
 * modes (CONNECT, TLS interception, transparent, reverse) have their own tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type HttpListenerConfig } from '../../src/config/schema.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { UpstreamError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { HttpParser } from '../../src/protocols/http/parser.js';
import { HttpSession, type SessionEnv } from '../../src/protocols/http/session.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { peer } from '../helpers/peers.js';
import { bigStream, closedPort, curl, type Origin, sha256Of, splitHead, startOrigin } from './http-origin.js';

function plainConnect(host: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    s.once('connect', () => resolve(s));
    s.once('error', (e: NodeJS.ErrnoException) =>
      reject(new UpstreamError('ERR_UPSTREAM_REFUSED', `connection refused (${e.code})`)),
    );
  });
}

function pipeBoth(a: Duplex, b: Duplex): Promise<void> {
  a.pipe(b);
  b.pipe(a);
  return new Promise((resolve) => {
    let n = 0;
    const done = () => ++n === 2 && resolve();
    a.once('close', done);
    b.once('close', done);
  });
}

let dir: string;
let scanner: Scanner;
let origin: Origin;
let proxy: Server;
let proxyPort: number;
const events = new MemoryEventSink();

/** A plain TCP server running HttpSession with the given listener settings. */
async function startProxy(
  overrides: Record<string, unknown> = {},
  engine?: Scanner,
  onError: 'block' | 'allow' = 'block',
): Promise<{ server: Server; port: number }> {
  const config = configSchema.parse({
    dataDir: dir,
    engine: { onError },
    listeners: [
      {
        name: 'web',
        protocol: 'http',
        listen: '127.0.0.1:0',
        holdLimit: '1MB',
        keepBack: '64KB',
        ...overrides,
      },
    ],
  });
  const listener = config.listeners[0] as HttpListenerConfig;
  const env: SessionEnv = {
    listener,
    deps: { config, scanner: engine ?? scanner, logger: silentLogger, events },
    connect: (o) => plainConnect(o.host, o.port),
    relay: pipeBoth,
    spoolDir: join(dir, 'spool'),
  };
  const server = createServer((client: Socket) => {
    client.on('error', () => {});
    const address = `${client.remoteAddress}:${client.remotePort}`;
    void new HttpSession(env, { client, clientAddress: address, scheme: 'http', origin: null }).run();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-http-'));
  scanner = await createBuiltinScanner();
  origin = await startOrigin();
  ({ server: proxy, port: proxyPort } = await startProxy());
});

after(async () => {
  proxy.close();
  await origin.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A curl sink that counts what the client received. */
async function countBytes(s: NodeJS.ReadableStream): Promise<number> {
  let n = 0;
  for await (const c of s) n += (c as Buffer).length;
  return n;
}

const url = (path: string) => `http://127.0.0.1:${origin.port}${path}`;
const viaProxy = () => ['-x', `http://127.0.0.1:${proxyPort}`];

describe('http session through curl', () => {
  it('forwards a clean GET', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const r = await curl(bin, [...viaProxy(), '-D', '-', url('/clean.txt')]);
    const { status, headers, body } = splitHead(r.stdout);
    assert.equal(status, 200);
    assert.match(headers, /^Via: 1\.1 scangate/im);
    assert.equal(body.toString(), 'hello, clean world\n');
  });

  it('blocks an EICAR download with 403, the block page and X-Scangate-Verdict', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    for (const path of ['/eicar.com', '/eicar-chunked', '/eicar.gz', '/eicar.br']) {
      const before = events.events.length;
      const r = await curl(bin, [...viaProxy(), '-D', '-', url(path)]);
      const { status, headers, body } = splitHead(r.stdout);
      assert.equal(status, 403, path);
      assert.match(headers, /^X-Scangate-Verdict: infected; signature="Eicar-Signature"/im);
      assert.match(body.toString(), /Eicar-Signature/);
      assert.equal(body.indexOf(EICAR.subarray(0, 20)), -1);
      const ev = events.events.slice(before).filter((e) => e.kind === 'verdict');
      assert.equal(ev.length, 1, path);
      assert.equal(ev[0]!.action, 'blocked');
      assert.equal(ev[0]!.signature, EICAR_NAME);
      assert.equal(ev[0]!.object, url(path));
      assert.equal(ev[0]!.protocol, 'http');
    }
  });

  it('blocks an EICAR multipart upload before any of it reaches the origin', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const file = join(dir, 'eicar.txt');
    writeFileSync(file, EICAR);
    const seen = origin.requests.length;
    const r = await curl(bin, [...viaProxy(), '-D', '-', '-F', `file=@${file}`, url('/upload')]);
    assert.equal(splitHead(r.stdout).status, 403);
    assert.equal(origin.requests.length, seen, 'the origin received no request at all');
    // A clean upload goes through whole.
    const clean = join(dir, 'clean.bin');
    writeFileSync(clean, randomBytes(200_000));
    const ok = await curl(bin, [...viaProxy(), '-F', `file=@${clean}`, url('/upload')]);
    const reply = JSON.parse(ok.stdout.toString()) as { received: number };
    assert.ok(reply.received > 200_000);
    assert.equal(origin.requests.at(-1)!.containsEicar, false);
  });

  it('delivers a clean 100 MB object byte-identical (streamed past holdLimit)', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const size = 100 * 1024 * 1024;
    const expected = await sha256Of(bigStream(size));
    const r = await curl(bin, [...viaProxy(), url(`/big?size=${size}`)], {
      sink: sha256Of,
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.sinkResult, expected);
  });

  it('cuts a streamed download whose tail is infected (partiallyblocked)', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const before = events.events.length;
    for (const q of ['', '&chunked=1']) {
      const r = await curl(bin, [...viaProxy(), url(`/big?size=3000000&eicar=1${q}`)], {
        sink: countBytes,
      });
      assert.notEqual(r.code, 0, 'curl sees an incomplete transfer');
      assert.ok((r.sinkResult as number) <= 3_000_000 + EICAR.length - 64 * 1024);
    }
    const ev = events.events.slice(before).filter((e) => e.kind === 'verdict');
    assert.deepEqual(
      ev.map((e) => e.action),
      ['partiallyblocked', 'partiallyblocked'],
    );
  });

  it('cuts a streamed download as soon as it is known infected, not at its end', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const before = events.events.length;
    const size = 80 * 1024 * 1024;
    const r = await curl(bin, [...viaProxy(), url(`/big?size=${size}&eicarAt=${2 * 1024 * 1024}`)], {
      sink: countBytes,
      timeoutMs: 120_000,
    });
    assert.notEqual(r.code, 0, 'curl sees an incomplete transfer');
    // Cut near the signature (2 MB in), not after relaying the rest of the 80 MB.
    assert.ok((r.sinkResult as number) < 2 * 1024 * 1024, `client got ${r.sinkResult} bytes`);
    const ev = events.events.slice(before).filter((e) => e.kind === 'verdict');
    assert.deepEqual(
      ev.map((e) => [e.action, e.signature]),
      [['partiallyblocked', 'Eicar-Signature']],
    );
  });

  it('cuts a chunked download (no size) early too when the database has signatures placed from the end', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    // An EOF-n signature (as ClamAV's daily.cvd has many): without the size, only it waits for the end.
    const db = join(dir, 'eof.ndb');
    writeFileSync(db, `Tail.Marker:0:EOF-16:${Buffer.from('scangate-tail-16').toString('hex')}\n`);
    const eofEngine = await createBuiltinScanner({ signatures: [db] });
    const eofProxy = await startProxy({}, eofEngine);
    try {
      const before = events.events.length;
      const size = 80 * 1024 * 1024;
      const r = await curl(
        bin,
        [
          '-x',
          `http://127.0.0.1:${eofProxy.port}`,
          url(`/big?size=${size}&eicarAt=${2 * 1024 * 1024}&chunked=1`),
        ],
        { sink: countBytes, timeoutMs: 120_000 },
      );
      assert.notEqual(r.code, 0, 'curl sees an incomplete transfer');
      assert.ok((r.sinkResult as number) < 2 * 1024 * 1024, `client got ${r.sinkResult} of ${size} bytes`);
      const ev = events.events.slice(before).filter((e) => e.kind === 'verdict');
      assert.deepEqual(
        ev.map((e) => [e.action, e.signature]),
        [['partiallyblocked', 'Eicar-Signature']],
      );
    } finally {
      eofProxy.server.close();
    }
  });

  it('answers 502 naming the reason when the origin is down', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const port = await closedPort();
    const r = await curl(bin, [...viaProxy(), '-D', '-', `http://127.0.0.1:${port}/`]);
    const { status, body } = splitHead(r.stdout);
    assert.equal(status, 502);
    assert.match(body.toString(), /refused/);
  });
});

/** Sends raw bytes and collects parsed responses until `count` arrived or the socket closed. */
async function rawExchange(payload: Buffer, count: number, methods: string[], port = proxyPort) {
  const s = connect(port, '127.0.0.1');
  const p = new HttpParser('response');
  for (const m of methods) p.expectResponse(m);
  const statuses: number[] = [];
  const bodies: string[] = [];
  let cur = '';
  await new Promise<void>((resolve) => {
    const take = (d: Buffer, end: boolean) => {
      for (const e of p.feed(d, end)) {
        if (e.type === 'response-head') statuses.push(e.head.status);
        if (e.type === 'body') cur += e.data.toString();
        if (e.type === 'message-end') {
          bodies.push(cur);
          cur = '';
          if (statuses.length === count) s.end();
        }
      }
    };
    s.on('data', (d: Buffer) => take(d, false));
    s.on('close', () => {
      take(Buffer.alloc(0), true);
      resolve();
    });
    s.on('error', () => resolve());
    s.write(payload);
  });
  return { statuses, bodies };
}

describe('http session on raw sockets', () => {
  it('serves 100 pipelined keep-alive requests over one client and one origin connection', async () => {
    const conns = origin.connections;
    const req = `GET ${url('/clean.txt')} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`;
    const { statuses, bodies } = await rawExchange(Buffer.from(req.repeat(100)), 100, Array(100).fill('GET'));
    assert.equal(statuses.length, 100);
    assert.ok(statuses.every((s) => s === 200));
    assert.ok(bodies.every((b) => b === 'hello, clean world\n'));
    assert.equal(origin.connections - conns, 1);
  });

  it("closes an idle client's upstream connection after upstreamIdleTimeout and reopens it on demand", async () => {
    const quick = await startProxy({ upstreamIdleTimeout: '200ms' });
    const s = connect(quick.port, '127.0.0.1');
    const p = new HttpParser('response');
    const responses: number[] = [];
    let wake: (() => void) | null = null;
    s.on('data', (d: Buffer) => {
      for (const e of p.feed(d)) {
        if (e.type === 'response-head') responses.push(e.head.status);
        if (e.type === 'message-end') wake?.();
      }
    });
    const get = () =>
      new Promise<void>((resolve) => {
        wake = resolve;
        p.expectResponse('GET');
        s.write(`GET ${url('/clean.txt')} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
      });
    try {
      const conns = origin.connections;
      await get();
      await get();
      assert.equal(origin.connections - conns, 1, 'back-to-back requests share the upstream connection');
      await new Promise((r) => setTimeout(r, 600));
      await get();
      assert.deepEqual(responses, [200, 200, 200]);
      assert.equal(origin.connections - conns, 2, 'a new upstream connection after the idle timeout');
    } finally {
      s.destroy();
      quick.server.close();
    }
  });

  it('answers a malformed request with 400 and closes', async () => {
    const { statuses } = await rawExchange(Buffer.from('GET / HTTP/1.1\r\nBad Header\r\n\r\n'), 1, ['GET']);
    assert.deepEqual(statuses, [400]);
    const smuggle = await rawExchange(
      Buffer.from(
        `POST ${url('/upload')} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      ),
      1,
      ['POST'],
    );
    assert.deepEqual(smuggle.statuses, [400]);
  });

  it('relays a protocol upgrade (101) and then splices both ways', async () => {
    const s = connect(proxyPort, '127.0.0.1');
    s.write(
      `GET ${url('/ws')} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`,
    );
    let got = Buffer.alloc(0);
    await new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.includes('\r\n\r\n') && !got.includes('ping')) s.write('ping-binary-\x00\x01\x02');
        if (got.includes('ping-binary-\x00\x01\x02')) resolve();
      });
    });
    s.destroy();
    assert.match(got.toString('latin1'), /^HTTP\/1\.1 101 /);
  });

  it('answers Expect: 100-continue itself and holds the body for scanning', async () => {
    const body = 'x'.repeat(1000);
    const s = connect(proxyPort, '127.0.0.1');
    s.write(
      `POST ${url('/upload')} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    let got = '';
    await new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.startsWith('HTTP/1.1 100') && !got.includes('"received"') && got.endsWith('\r\n\r\n'))
          s.write(body);
        if (got.includes('"received"')) resolve();
      });
    });
    s.destroy();
    assert.match(got, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    assert.match(got, /"received":1000/);
  });
});

describe('http session limits and edge cases', () => {
  it('cuts an infected upload above holdLimit mid-body: the origin never gets a complete request', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const file = join(dir, 'big-infected.bin');
    // EICAR at the end, then 1.5 MB into 40 MB (decided early: the client still reads its 403).
    for (const content of [
      Buffer.concat([randomBytes(3_000_000), EICAR]),
      Buffer.concat([randomBytes(1_500_000), EICAR, randomBytes(40_000_000)]),
    ]) {
      writeFileSync(file, content);
      const seen = origin.requests.length;
      const before = events.events.length;
      const r = await curl(bin, [...viaProxy(), '-D', '-', '--data-binary', `@${file}`, url('/upload')]);
      assert.equal(splitHead(r.stdout).status, 403);
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(origin.requests.slice(seen).filter((q) => q.url === '/upload').length, 0);
      const ev = events.events.slice(before).filter((e) => e.kind === 'verdict');
      assert.equal(ev[0]?.action, 'partiallyblocked');
    }
  });

  it('serves HTTP/1.0 clients close-delimited and answers HEAD without a body', async () => {
    const r10 = await rawExchange(Buffer.from(`GET ${url('/clean.txt')} HTTP/1.0\r\n\r\n`), 1, ['GET']);
    assert.deepEqual(r10.statuses, [200]);
    assert.deepEqual(r10.bodies, ['hello, clean world\n']);
    const head = await rawExchange(
      Buffer.from(`HEAD ${url('/eicar.com')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
      1,
      ['HEAD'],
    );
    assert.deepEqual(head.statuses, [200]);
  });

  it('answers 408 to a client that stalls inside a request head, and closes idle ones silently', async () => {
    const slow = await startProxy({ headerTimeout: '300ms' });
    try {
      const t0 = performance.now();
      const partial = await rawExchange(Buffer.from('GET http://127.0.0.1/ HT'), 1, ['GET'], slow.port);
      assert.deepEqual(partial.statuses, [408]);
      assert.ok(performance.now() - t0 < 2000);
      const idle = await rawExchange(Buffer.alloc(0), 1, ['GET'], slow.port);
      assert.deepEqual(idle.statuses, []);
    } finally {
      slow.server.close();
    }
  });

  it('keeps a held body in memory up to the listener spoolMemory, past it in a temp file in dataDir/spool', async () => {
    const inputs: string[] = [];
    const recording: Scanner = {
      scan: (input, ctx) => {
        const path = (input as { path?: unknown }).path;
        inputs.push(Buffer.isBuffer(input) ? 'memory' : typeof path === 'string' ? path : 'stream');
        return scanner.scan(input, ctx);
      },
      version: () => scanner.version(),
    };
    const req = Buffer.from(
      `GET ${url('/big?size=300000')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    for (const spoolMemory of ['1MB', '64KB']) {
      const p = await startProxy({ spoolMemory }, recording);
      try {
        assert.deepEqual((await rawExchange(req, 1, ['GET'], p.port)).statuses, [200]);
      } finally {
        p.server.close();
      }
    }
    assert.equal(inputs.length, 2);
    assert.equal(inputs[0], 'memory');
    assert.ok(inputs[1]!.startsWith(join(dir, 'spool')), `spilled to ${inputs[1]}`);
  });

  it('answers 503 when the scanner fails, or forwards when engine.onError is allow', async () => {
    const broken: Scanner = {
      scan: async (input) => {
        (input as NodeJS.ReadableStream).resume?.();
        return { status: 'error', reason: 'clamd is not answering' };
      },
      version: () => ({ engine: 'broken', signatures: 0, databaseVersion: '0' }),
    };
    const closed = await startProxy({}, broken, 'block');
    const open = await startProxy({}, broken, 'allow');
    try {
      const req = Buffer.from(`GET ${url('/clean.txt')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const a = await rawExchange(req, 1, ['GET'], closed.port);
      assert.deepEqual(a.statuses, [503]);
      assert.match(a.bodies[0]!, /clamd is not answering/);
      const b = await rawExchange(req, 1, ['GET'], open.port);
      assert.deepEqual(b.statuses, [200]);
      assert.deepEqual(b.bodies, ['hello, clean world\n']);
      const ev = events.events.filter((e) => e.kind === 'verdict' && e.reason === 'clamd is not answering');
      assert.deepEqual(
        ev.map((e) => e.action),
        ['blocked', 'allowed'],
      );
    } finally {
      closed.server.close();
      open.server.close();
    }
  });

  it('detects a request looping back through the proxy (508)', async () => {
    const r = await rawExchange(
      Buffer.from(`GET http://127.0.0.1:${proxyPort}/x HTTP/1.1\r\nHost: 127.0.0.1:${proxyPort}\r\n\r\n`),
      1,
      ['GET'],
    );
    assert.deepEqual(r.statuses, [508]);
  });

  it('refuses origin-form requests on an explicit proxy and CONNECT where it is not accepted', async () => {
    const r = await rawExchange(Buffer.from('GET /x HTTP/1.1\r\nHost: a\r\n\r\n'), 1, ['GET']);
    assert.deepEqual(r.statuses, [400]);
    const c = await rawExchange(Buffer.from('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n'), 1, ['CONNECT']);
    assert.deepEqual(c.statuses, [405]);
  });
});
