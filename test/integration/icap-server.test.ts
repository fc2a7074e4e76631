/**
 * The ICAP server (issue 8) over real sockets with a raw RFC 3507 client: OPTIONS, 204 and echo
 * rules with and without Allow: 204 and previews, the block page for EICAR (plain, gzip-encoded,
 * in uploads), ISTag following the database, scanner errors (fail closed by default, open by
 * policy), streamed bodies cut when found infected late, and hostile clients: garbage, slowloris
 * heads, idle and vanished clients, none of which stall the others.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type IcapListenerConfig } from '../../src/config/schema.js';
import { ClamdScanner } from '../../src/engine/backends/clamd.js';
import { type BuiltinScanner, createBuiltinScanner, loadEngine } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { startGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { buildRequest, IcapClient, type RequestSpec, startTestIcap } from '../helpers/icap.js';

let dir: string;
let scanner: BuiltinScanner;
const events = new MemoryEventSink();
const services: RunningService[] = [];

async function start(
  overrides: Partial<Record<keyof IcapListenerConfig, unknown>> = {},
  s: Scanner = scanner,
): Promise<number> {
  const { service, port } = await startTestIcap({ dataDir: dir, scanner: s, events, overrides });
  services.push(service);
  return port;
}

const REQ = 'GET http://origin.test/files/a.bin HTTP/1.1\r\nHost: origin.test\r\n\r\n';
const res = (len: number, extra = '') =>
  `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${len}\r\n${extra}\r\n`;

function respmod(body: Buffer, more: Partial<RequestSpec> = {}, extra = ''): ReturnType<typeof buildRequest> {
  return buildRequest({ reqHead: REQ, resHead: res(body.length, extra), body, ...more });
}

let port: number;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sg-icap-'));
  scanner = await createBuiltinScanner();
  port = await start({ headerTimeout: 1, idleTimeout: 3 });
});

after(async () => {
  await Promise.all(services.map((s) => s.close(100)));
  rmSync(dir, { recursive: true, force: true });
});

async function once(p: number, req: ReturnType<typeof buildRequest>) {
  const c = await IcapClient.open(p);
  try {
    return await c.exchange(req);
  } finally {
    c.close();
  }
}

describe('ICAP OPTIONS and services', () => {
  it('advertises methods, preview, 204, limits and an ISTag of at most 32 characters', async () => {
    const c = await IcapClient.open(port);
    c.write('OPTIONS icap://127.0.0.1/avscan ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n');
    const r = await c.read();
    assert.equal(r.status, 200);
    assert.equal(r.headers.methods, 'RESPMOD, REQMOD');
    assert.equal(r.headers.preview, '1024');
    assert.equal(r.headers.allow, '204');
    assert.equal(r.headers['transfer-preview'], '*');
    assert.equal(r.headers['max-connections'], '10000');
    assert.equal(r.headers['options-ttl'], '3600');
    assert.equal(r.headers.encapsulated, 'null-body=0');
    assert.match(r.headers.istag!, /^"[^"]{1,32}"$/);
    assert.match(r.headers.service!, /scangate/);
    // Same connection: one method per alias service, 404 elsewhere, and the connection survives.
    c.write(
      'OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\n\r\nOPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\n\r\n',
    );
    assert.equal((await c.read()).headers.methods, 'RESPMOD');
    assert.equal((await c.read()).headers.methods, 'REQMOD');
    c.write('OPTIONS icap://127.0.0.1/virus_scan ICAP/1.0\r\n\r\n');
    const nf = await c.read();
    assert.equal(nf.status, 404);
    assert.ok(nf.headers.istag);
    c.write('OPTIONS icap://127.0.0.1/avscan ICAP/1.0\r\n\r\n');
    assert.equal((await c.read()).status, 200);
    c.close();
  });

  it('Transfer-Ignore/Complete and Options-TTL come from the listener config', async () => {
    const p = await start({
      transferIgnore: ['jpg', 'mp4'],
      transferComplete: ['exe'],
      optionsTtl: 60,
      previewSize: 0,
    });
    const c = await IcapClient.open(p);
    c.write('OPTIONS icap://127.0.0.1/avscan ICAP/1.0\r\n\r\n');
    const r = await c.read();
    assert.equal(r.headers['transfer-ignore'], 'jpg, mp4');
    assert.equal(r.headers['transfer-complete'], 'exe');
    assert.equal(r.headers['options-ttl'], '60');
    assert.equal(r.headers.preview, '0');
    c.close();
  });

  it('a method the service does not do is 405; a body after it closes the connection', async () => {
    const c = await IcapClient.open(port);
    c.write(
      buildRequest({
        method: 'RESPMOD',
        service: 'reqmod',
        reqHead: REQ,
        resHead: res(3),
        body: Buffer.from('abc'),
      }).first,
    );
    const r = await c.read();
    assert.equal(r.status, 405);
    assert.equal(r.headers.connection, 'close');
    assert.ok(await c.waitClosed());
  });

  it('ISTag changes when the signature database does', async () => {
    const own = await createBuiltinScanner();
    const p = await start({}, own);
    const tag = async () => {
      const c = await IcapClient.open(p);
      c.write('OPTIONS icap://127.0.0.1/avscan ICAP/1.0\r\n\r\n');
      const r = await c.read();
      c.close();
      return r.headers.istag;
    };
    const before1 = await tag();
    assert.equal(await tag(), before1, 'stable while the database is');
    const sig = join(dir, 'extra.ndb');
    writeFileSync(sig, `Test.Icap.Extra:0:*:${Buffer.from('scangate-icap-extra').toString('hex')}\n`);
    await own.swap(await loadEngine([sig]));
    const after1 = await tag();
    assert.notEqual(after1, before1);
    const r = await once(p, respmod(Buffer.from('clean'), { allow204: true }));
    assert.equal(r.status, 204);
    assert.equal(r.headers.istag, after1, 'every response carries the current ISTag');
  });
});

describe('ICAP in the gateway', () => {
  it('a config listener with protocol: icap is started by the gateway', async () => {
    const config = configSchema.parse({
      dataDir: join(dir, 'gateway'),
      listeners: [{ name: 'icap', protocol: 'icap', listen: '127.0.0.1:0' }],
      admin: null,
    });
    const gw = await startGateway(config, silentLogger);
    try {
      const svc = gw.services.find((x) => x.protocol === 'icap');
      assert.ok(svc, 'icap service running');
      const r = await once((svc.address as AddressInfo).port, respmod(EICAR, { allow204: true }));
      assert.match(r.sections['res-hdr']!, /403 Forbidden/);
      assert.match(r.headers.istag!, /^"sg-[0-9a-f]+"$/);
    } finally {
      await gw.close(100);
    }
  });
});

describe('ICAP RESPMOD/REQMOD verdicts', () => {
  const clean = randomBytes(5000);

  it('clean with Allow: 204 is 204; without it the message comes back byte for byte', async () => {
    const r204 = await once(port, respmod(clean, { allow204: true }));
    assert.equal(r204.status, 204);
    assert.equal(r204.body, null);
    const echo = await once(port, respmod(clean, { chunkSizes: [1, 700, 4096] }));
    assert.equal(echo.status, 200);
    assert.equal(echo.sections['res-hdr'], res(clean.length));
    assert.ok(echo.body?.equals(clean));
  });

  it('a preview holding the whole body may be answered 204 without Allow: 204 (RFC 3507 §4.6)', async () => {
    const r = await once(port, respmod(clean, { preview: 8000 }));
    assert.equal(r.continued, false);
    assert.equal(r.status, 204);
  });

  it('a partial preview gets 100 Continue, then 204 if allowed, else the echo', async () => {
    const allowed = await once(port, respmod(clean, { preview: 1024, allow204: true }));
    assert.equal(allowed.continued, true);
    assert.equal(allowed.status, 204);
    const echoed = await once(port, respmod(clean, { preview: 1024, chunkSizes: [100, 333] }));
    assert.equal(echoed.continued, true);
    assert.equal(echoed.status, 200);
    assert.ok(echoed.body?.equals(clean));
  });

  it('a bodiless message is unmodified: 204 when allowed, else its heads echoed', async () => {
    const r = await once(
      port,
      buildRequest({
        reqHead: REQ,
        resHead: 'HTTP/1.1 304 Not Modified\r\n\r\n',
        body: null,
        allow204: true,
      }),
    );
    assert.equal(r.status, 204);
    const e = await once(port, buildRequest({ method: 'REQMOD', reqHead: REQ, body: null }));
    assert.equal(e.status, 200);
    assert.equal(e.headers.encapsulated, 'req-hdr=0, null-body=' + REQ.length);
    assert.equal(e.sections['req-hdr'], REQ);
  });

  it('EICAR is replaced by the block page naming the signature, and reported', async () => {
    for (const more of [{ allow204: true }, { preview: 1024 }, { preview: 10, chunkSizes: [3] }, {}]) {
      const r = await once(port, respmod(EICAR, more));
      assert.equal(r.status, 200, JSON.stringify(more));
      assert.match(r.sections['res-hdr']!, /^HTTP\/1\.1 403 Forbidden\r\n/);
      assert.match(
        r.sections['res-hdr']!,
        new RegExp(`X-Scangate-Verdict: infected; signature="${EICAR_NAME}"`),
      );
      assert.match(r.body!.toString(), new RegExp(`<strong>${EICAR_NAME}</strong>`));
      assert.match(r.body!.toString(), /http:\/\/origin\.test\/files\/a\.bin/);
    }
    const ev = events.events.find((e) => e.protocol === 'icap' && e.signature === EICAR_NAME);
    assert.equal(ev?.action, 'blocked');
    assert.equal(ev?.object, 'http://origin.test/files/a.bin');
    assert.equal(ev?.server, 'origin.test');
    assert.match(ev?.client ?? '', /^127\.0\.0\.1:\d+$/);
  });

  it('a gzip-encoded body is decoded for scanning; the echo keeps the encoded bytes', async () => {
    const gz = gzipSync(Buffer.concat([randomBytes(3000), EICAR]));
    const r = await once(port, respmod(gz, { allow204: true }, 'Content-Encoding: gzip\r\n'));
    assert.equal(r.status, 200);
    assert.match(r.sections['res-hdr']!, /403 Forbidden/);
    const cleanGz = gzipSync(Buffer.from('nothing to see'.repeat(100)));
    const e = await once(port, respmod(cleanGz, {}, 'Content-Encoding: gzip\r\n'));
    assert.ok(e.body?.equals(cleanGz));
  });

  it('an infected upload (REQMOD) is answered with the block page instead of the request', async () => {
    const up = 'POST http://origin.test/upload HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 68\r\n\r\n';
    const r = await once(port, buildRequest({ method: 'REQMOD', reqHead: up, body: EICAR, preview: 1024 }));
    assert.match(r.headers.encapsulated!, /^res-hdr=0, res-body=\d+$/);
    assert.match(r.sections['res-hdr']!, /403 Forbidden/);
    const ok = await once(
      port,
      buildRequest({ method: 'REQMOD', reqHead: up, body: Buffer.alloc(68, 0x41) }),
    );
    assert.equal(ok.sections['req-hdr'], up);
    assert.ok(ok.body?.equals(Buffer.alloc(68, 0x41)));
  });

  it('a scanner error is ICAP 500 by default and passes with onError: allow', async () => {
    const broken = new ClamdScanner({ address: join(dir, 'no-clamd.sock'), connectTimeoutMs: 500 });
    const closed = await start({}, broken);
    const r = await once(closed, respmod(clean, { allow204: true }));
    assert.equal(r.status, 500);
    assert.match(r.headers['x-scangate-reason']!, /scan failed/);
    const open = await start({ onError: 'allow' }, broken);
    assert.equal((await once(open, respmod(clean, { allow204: true }))).status, 204);
    assert.ok(events.events.some((e) => e.protocol === 'icap' && e.action === 'allowed'));
  });

  it('bodies above holdLimit stream back; one found infected at its end is cut off', async () => {
    const p = await start({ holdLimit: '64KB', keepBack: '16KB', spoolMemory: '16KB' });
    const big = randomBytes(1024 * 1024);
    const ok = await once(p, respmod(big, { allow204: true, chunkSizes: [65536] }));
    assert.equal(ok.status, 200, 'past holdLimit the answer is already a 200');
    assert.ok(ok.body?.equals(big));
    const bad = Buffer.concat([big, EICAR]);
    const c = await IcapClient.open(p);
    c.write(respmod(bad, { chunkSizes: [65536] }).first);
    await assert.rejects(c.read(), /connection closed/, 'no complete answer for a late-found infection');
    c.close();
    assert.ok(events.events.some((e) => e.protocol === 'icap' && e.action === 'partiallyblocked'));
  });

  it(
    'a streamed body found infected before its end is cut then, without waiting for the rest',
    { timeout: 60_000 },
    async () => {
      const p = await start({ holdLimit: '64KB', keepBack: '16KB', spoolMemory: '16KB' });
      const body = Buffer.concat([randomBytes(200_000), EICAR, randomBytes(8 * 1024 * 1024)]);
      const whole = respmod(body, { chunkSizes: [65536] }).first;
      const c = await IcapClient.open(p);
      // Only the first 400 KB of the request: the server must answer (by cutting) from what it has.
      c.write(whole.subarray(0, 400_000));
      await assert.rejects(c.read(), /connection closed/, 'cut before the body ended');
      c.close();
      const last = events.events.filter((e) => e.protocol === 'icap').at(-1);
      assert.deepEqual([last?.action, last?.signature], ['partiallyblocked', EICAR_NAME]);
    },
  );

  it('a client with a copy (Allow: 204) waits for the whole verdict; one without gets the answer streamed', async () => {
    const body = randomBytes(300_000);
    const held = await once(port, respmod(body, { allow204: true, chunkSizes: [16384] }));
    assert.equal(held.status, 204, 'under holdLimit: held whole, then 204');
    const streamed = await once(port, respmod(body, { preview: 1024, chunkSizes: [16384] }));
    assert.equal(streamed.status, 200, 'over noBackup.holdLimit: the echo starts before the body ends');
    assert.ok(streamed.body?.equals(body));
    const c = await IcapClient.open(port);
    c.write(respmod(Buffer.concat([body, EICAR]), { chunkSizes: [16384] }).first);
    await assert.rejects(c.read(), /connection closed/, 'infected after release: cut');
    c.close();
  });

  it('many requests, pipelined, on one keep-alive connection are answered in order', async () => {
    const c = await IcapClient.open(port);
    const reqs = [respmod(clean, { allow204: true }), respmod(EICAR, { allow204: true }), respmod(clean)];
    c.write(Buffer.concat(reqs.map((r) => r.first)));
    assert.equal((await c.read()).status, 204);
    assert.match((await c.read()).sections['res-hdr']!, /403/);
    assert.ok((await c.read()).body?.equals(clean));
    for (let i = 0; i < 20; i++) {
      const r = await c.exchange(respmod(clean, { preview: 100, allow204: i % 2 === 0 }));
      assert.equal(r.status, i % 2 === 0 ? 204 : 200);
    }
    c.close();
  });
});

describe('ICAP hostile clients', () => {
  it('garbage gets 400 and the connection closes; the server carries on', async () => {
    for (const junk of [
      'HELLO\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03',
      'RESPMOD icap://h/avscan ICAP/1.0\r\nEncapsulated: res-hdr=0, res-body=9\r\n\r\nHTTP/1.1 \r\n\r\n',
    ]) {
      const c = await IcapClient.open(port);
      c.write(Buffer.from(junk, 'latin1'));
      const r = await c.read();
      assert.equal(r.status, 400, junk);
      assert.ok(await c.waitClosed());
    }
    const c = await IcapClient.open(port);
    c.write(
      buildRequest({ reqHead: REQ, resHead: res(3), body: Buffer.from('abc'), allow204: true })
        .first.toString('latin1')
        .replace('3\r\nabc\r\n', 'zz\r\n'),
    );
    assert.equal((await c.read()).status, 400, 'bad chunk framing');
    assert.equal((await once(port, respmod(clean(), { allow204: true }))).status, 204);
  });

  it('a preview larger than the server would hold is refused, not buffered', async () => {
    const p = await start({ holdLimit: '64KB' });
    const c = await IcapClient.open(p);
    c.write(respmod(randomBytes(200_000), { preview: 150_000 }).first.subarray(0, 2000));
    const r = await c.read();
    assert.equal(r.status, 400);
    assert.match(r.headers['x-scangate-reason']!, /Preview 150000/);
    assert.ok(await c.waitClosed());
  });

  it('a slowloris head gets 408 after headerTimeout while another client is served', async () => {
    const slow = await IcapClient.open(port);
    const head = 'OPTIONS icap://127.0.0.1/avscan ICAP/1.0\r\nX-Slow: ';
    slow.write(head.slice(0, 10));
    let i = 10;
    const trickle = setInterval(() => {
      if (!slow.closed) slow.write(head[i++ % head.length]!);
    }, 200);
    try {
      // Served in the meantime, on another connection.
      assert.equal((await once(port, respmod(clean(), { allow204: true }))).status, 204);
      const r = await slow.read();
      assert.equal(r.status, 408);
      assert.ok(await slow.waitClosed());
    } finally {
      clearInterval(trickle);
      slow.close();
    }
  });

  it('1,000 idle connections do not stall another client and are closed after idleTimeout', async () => {
    const idle: IcapClient[] = [];
    for (let i = 0; i < 1000; i += 100)
      idle.push(...(await Promise.all(Array.from({ length: 100 }, () => IcapClient.open(port)))));
    // Half of them have sent part of a head: those get 408 at headerTimeout, the rest just close.
    const partial = idle.slice(0, 500);
    for (const c of partial) c.write('RESPMOD icap://127.0.0.1/avscan ICAP/1.0\r\nHost: x\r\n');
    assert.equal((await once(port, respmod(clean(), { allow204: true }))).status, 204);
    const answers = await Promise.all(partial.map((c) => c.read()));
    assert.ok(answers.every((r) => r.status === 408));
    await Promise.all(idle.map((c) => c.waitClosed()));
  });

  it('a client vanishing mid-body leaves nothing behind and does not disturb the next', async () => {
    const p = await start({ spoolMemory: '4KB' });
    const body = randomBytes(200_000);
    const req = respmod(body, { chunkSizes: [8192] });
    const c = await IcapClient.open(p);
    c.write(req.first.subarray(0, 100_000));
    await new Promise((r) => setTimeout(r, 200));
    c.close();
    const r = await once(p, respmod(body, { allow204: true }));
    assert.equal(r.status, 204);
    // The vanished client's spool file is removed once its scan is aborted.
    for (let t = 0; t < 50 && spoolFiles().length > 0; t++) await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(spoolFiles(), []);
  });
});

function clean(): Buffer {
  return Buffer.from('an ordinary clean body');
}

function spoolFiles(): string[] {
  try {
    return readdirSync(join(dir, 'spool'));
  } catch {
    return [];
  }
}
