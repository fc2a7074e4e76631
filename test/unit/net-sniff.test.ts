/**
 * Sniffing before anyone is answered: parseClientHello on real ClientHellos (captured from Node's own
 * TLS client and from openssl s_client), cut at every position and re-fragmented over several records,
 * and on hostile bytes (fast-check); classifyFirstBytes on HTTP methods, TLS and other protocols.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { type AddressInfo, createServer, connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import fc from 'fast-check';
import {
  type ClientHelloResult,
  classifyFirstBytes,
  parseClientHello,
  peekFirstBytes,
} from '../../src/net/sniff.js';
import { which } from '../helpers/peers.js';

/** Starts a TCP server that records what the client sends for `ms`, then closes. */
async function captureClientBytes(start: (port: number) => void, ms = 300): Promise<Buffer> {
  return new Promise((resolve) => {
    const server = createServer((s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      s.on('error', () => {});
      setTimeout(() => {
        s.destroy();
        server.close();
        resolve(Buffer.concat(chunks));
      }, ms);
    });
    server.listen(0, '127.0.0.1', () => start((server.address() as AddressInfo).port));
  });
}

async function nodeClientHello(servername: string, alpn: string[]): Promise<Buffer> {
  return captureClientBytes((port) => {
    const s = tlsConnect({
      port,
      host: '127.0.0.1',
      servername,
      ALPNProtocols: alpn,
      rejectUnauthorized: false,
    });
    s.on('error', () => {});
  });
}

/** Re-splits a ClientHello's handshake bytes into TLS records of `size` bytes. */
function refragment(record: Buffer, size: number): Buffer {
  const body = record.subarray(5, 5 + record.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const frag = body.subarray(i, i + size);
    const h = Buffer.from([22, 3, 1, 0, 0]);
    h.writeUInt16BE(frag.length, 3);
    out.push(h, frag);
  }
  return Buffer.concat(out);
}

let nodeHello: Buffer;
let opensslHello: Buffer | null = null;

before(async () => {
  nodeHello = await nodeClientHello('Origin.Example.test', ['h2', 'http/1.1']);
  const openssl = which('openssl');
  if (openssl) {
    opensslHello = await captureClientBytes((port) => {
      const p = spawn(
        openssl,
        ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'mail.example.test', '-alpn', 'smtp'],
        {
          stdio: ['pipe', 'ignore', 'ignore'],
        },
      );
      setTimeout(() => p.kill(), 600);
    }, 400);
  }
});

describe('parseClientHello', () => {
  test('a real Node ClientHello: SNI lower-cased, ALPN in order, TLS 1.3 offered', () => {
    const r = parseClientHello(nodeHello);
    assert.equal(r.state, 'ok');
    if (r.state !== 'ok') return;
    assert.equal(r.hello.sni, 'origin.example.test');
    assert.deepEqual(r.hello.alpn, ['h2', 'http/1.1']);
    assert.equal(r.hello.legacyVersion, 0x0303);
    assert.ok(r.hello.supportedVersions.includes(0x0304));
    assert.equal(r.length, nodeHello.length);
  });

  test('a real openssl s_client ClientHello', (t) => {
    if (!opensslHello?.length) return t.skip('openssl not available');
    const r = parseClientHello(opensslHello);
    assert.equal(r.state, 'ok');
    if (r.state === 'ok') {
      assert.equal(r.hello.sni, 'mail.example.test');
      assert.deepEqual(r.hello.alpn, ['smtp']);
    }
  });

  test('every strict prefix needs more; the whole parses; trailing bytes are not consumed', () => {
    for (let i = 0; i < nodeHello.length; i++) {
      const r = parseClientHello(nodeHello.subarray(0, i));
      assert.equal(r.state, 'need-more', `prefix ${i}`);
    }
    const withData = Buffer.concat([nodeHello, Buffer.from([23, 3, 3, 0, 1, 0])]);
    const r = parseClientHello(withData);
    assert.equal(r.state, 'ok');
    if (r.state === 'ok') assert.equal(r.length, nodeHello.length);
  });

  test('handshake fragmented over many records parses the same, at every cut position', () => {
    const whole = parseClientHello(nodeHello) as Extract<ClientHelloResult, { state: 'ok' }>;
    for (const size of [1, 2, 3, 7, 64, 200, 511]) {
      const split = refragment(nodeHello, size);
      const r = parseClientHello(split);
      assert.equal(r.state, 'ok', `fragment size ${size}`);
      if (r.state === 'ok') {
        assert.deepEqual(r.hello, whole.hello);
        assert.equal(r.length, split.length);
      }
      if (size === 7) {
        for (let i = 0; i < split.length; i++)
          assert.equal(parseClientHello(split.subarray(0, i)).state, 'need-more', `size 7 prefix ${i}`);
      }
    }
  });

  test('not TLS: HTTP, SSH, BitTorrent; malformed: wrong handshake type, interleaved alert, oversize', () => {
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')).state, 'not-tls');
    assert.equal(parseClientHello(Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')).state, 'not-tls');
    assert.equal(parseClientHello(Buffer.from('\x13BitTorrent protocol', 'latin1')).state, 'not-tls');
    assert.equal(parseClientHello(Buffer.from([22, 2, 0])).state, 'not-tls');
    const serverHello = Buffer.from(nodeHello);
    serverHello[5] = 2;
    assert.deepEqual(parseClientHello(serverHello).state, 'malformed');
    const split = refragment(nodeHello, 100);
    const alert = Buffer.from([21, 3, 3, 0, 2, 2, 40]);
    const interleaved = Buffer.concat([split.subarray(0, 105), alert, split.subarray(105)]);
    assert.equal(parseClientHello(interleaved).state, 'malformed');
    const huge = Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]);
    assert.equal(parseClientHello(huge).state, 'malformed');
    const emptyRecord = Buffer.from([22, 3, 1, 0, 0]);
    assert.equal(parseClientHello(emptyRecord).state, 'malformed');
  });

  test('property: arbitrary bytes never throw and give a known state', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const r = parseClientHello(Buffer.from(bytes));
        assert.ok(['need-more', 'not-tls', 'ok', 'malformed'].includes(r.state));
      }),
      { numRuns: 3000 },
    );
  });

  test('property: TLS-looking records with random bodies never throw; ok results stay inside the input', () => {
    const record = fc
      .record({
        minor: fc.integer({ min: 0, max: 5 }),
        body: fc.uint8Array({ minLength: 0, maxLength: 400 }),
      })
      .map(({ minor, body }) => {
        const h = Buffer.from([22, 3, minor, 0, 0]);
        h.writeUInt16BE(body.length, 3);
        return Buffer.concat([h, Buffer.from(body)]);
      });
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 4 }), (records) => {
        const buf = Buffer.concat(records);
        const r = parseClientHello(buf);
        if (r.state === 'ok') assert.ok(r.length <= buf.length);
      }),
      { numRuns: 2000 },
    );
  });

  test('property: a real ClientHello with random byte mutations never throws', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.nat(),
        (mutations, cut) => {
          const b = Buffer.from(nodeHello);
          for (const m of mutations) b[m.at % b.length] = m.value;
          const r = parseClientHello(b.subarray(0, cut % (b.length + 1)));
          assert.ok(['need-more', 'not-tls', 'ok', 'malformed'].includes(r.state));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('property: any record fragmentation of a real ClientHello parses to the same hello', () => {
    const whole = parseClientHello(nodeHello) as Extract<ClientHelloResult, { state: 'ok' }>;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 600 }), (size) => {
        const r = parseClientHello(refragment(nodeHello, size));
        assert.equal(r.state, 'ok');
        if (r.state === 'ok') assert.deepEqual(r.hello, whole.hello);
      }),
      { numRuns: 200 },
    );
  });
});

describe('classifyFirstBytes', () => {
  test('HTTP methods, with prefixes needing more', () => {
    for (const m of [
      'GET',
      'POST',
      'PUT',
      'DELETE',
      'HEAD',
      'OPTIONS',
      'CONNECT',
      'PATCH',
      'PROPFIND',
      'VERSION-CONTROL',
    ]) {
      const line = Buffer.from(`${m} /x HTTP/1.1\r\n`);
      assert.equal(classifyFirstBytes(line), 'http', m);
      for (let i = 0; i <= m.length + 1; i++)
        assert.equal(classifyFirstBytes(line.subarray(0, i)), 'need-more', `${m}[${i}]`);
    }
    assert.equal(classifyFirstBytes(Buffer.from('GET http://a/ HTTP/1.1')), 'http');
    assert.equal(classifyFirstBytes(Buffer.from('OPTIONS * HTTP/1.1')), 'http');
    assert.equal(classifyFirstBytes(Buffer.from('CONNECT a.example:443 HTTP/1.1')), 'http');
  });

  test('TLS records', () => {
    assert.equal(classifyFirstBytes(nodeHello), 'tls');
    assert.equal(classifyFirstBytes(nodeHello.subarray(0, 1)), 'need-more');
    assert.equal(classifyFirstBytes(nodeHello.subarray(0, 3)), 'tls');
    assert.equal(classifyFirstBytes(Buffer.from([22, 9])), 'unknown');
  });

  test('other protocols are unknown: BitTorrent, SSH, lower-case methods, binary', () => {
    assert.equal(
      classifyFirstBytes(Buffer.from('\x13BitTorrent protocol\0\0\0\0\0\x10\0\x05', 'latin1')),
      'unknown',
    );
    assert.equal(classifyFirstBytes(Buffer.from('SSH-2.0-OpenSSH_9.6 Debian\r\n')), 'unknown');
    assert.equal(classifyFirstBytes(Buffer.from('get / HTTP/1.1')), 'unknown');
    assert.equal(classifyFirstBytes(Buffer.from('GET  / HTTP/1.1')), 'unknown');
    assert.equal(classifyFirstBytes(Buffer.from([0, 0, 0, 1])), 'unknown');
    assert.equal(classifyFirstBytes(Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZ')), 'unknown');
  });

  test('property: never throws; a decision never changes when more bytes arrive', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 16 }), (a, b) => {
        const first = classifyFirstBytes(Buffer.from(a));
        const more = classifyFirstBytes(Buffer.concat([Buffer.from(a), Buffer.from(b)]));
        if (first !== 'need-more') assert.equal(more, first);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('peekFirstBytes', () => {
  let server: ReturnType<typeof createServer>;
  let port: number;
  const accepted: Socket[] = [];
  before(async () => {
    server = createServer((s) => accepted.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });

  async function pair(): Promise<{ client: Socket; served: Socket }> {
    const n = accepted.length;
    const client = netConnect(port, '127.0.0.1');
    await new Promise((r) => client.once('connect', r));
    while (accepted.length === n) await new Promise((r) => setTimeout(r, 5));
    return { client, served: accepted[accepted.length - 1]! };
  }

  test('bytes read while peeking are delivered again to the next reader, in order', async () => {
    const { client, served } = await pair();
    client.write('GE');
    setTimeout(() => client.write('T / HTTP/1.1\r\n'), 30);
    const peeked = await peekFirstBytes(served, {
      max: 1024,
      timeoutMs: 2000,
      want: (b) => classifyFirstBytes(b) !== 'need-more',
    });
    assert.match(peeked.toString(), /^GET \//);
    client.end('Host: x\r\n\r\n');
    const chunks: Buffer[] = [];
    for await (const c of served) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  });

  test('a silent client: returns empty after the timeout', async () => {
    const { client, served } = await pair();
    const t0 = Date.now();
    const peeked = await peekFirstBytes(served, { max: 10, timeoutMs: 100, want: () => false });
    assert.equal(peeked.length, 0);
    assert.ok(Date.now() - t0 >= 90);
    client.destroy();
  });
});
