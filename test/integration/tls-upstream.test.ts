/**
 * Upstream verification against in-process TLS origins: every way a server can be untrustworthy or
 * unreachable gives its own UpstreamError code and a reason a person can read.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { UpstreamError } from '../../src/errors.js';
import { ResolveCache, UpstreamFirstConnector } from '../../src/net/connect.js';
import {
  connectUpstreamTls,
  UpstreamSessionCache,
  type UpstreamTls,
  type UpstreamTlsOptions,
} from '../../src/tls/upstream.js';
import { selfSignedCert, startTlsOrigin, TestCa, type TlsOrigin } from '../helpers/pki.js';

let ca: TestCa;
let otherCa: TestCa;
const origins: TlsOrigin[] = [];
const servers: Server[] = [];

async function origin(
  kind: 'good' | 'expired' | 'future' | 'wrong-name' | 'self-signed' | 'other-ca',
  alpn?: string[],
) {
  const names = { dnsNames: ['origin.test', 'localhost'], ipAddresses: ['127.0.0.1'] };
  const cert =
    kind === 'good'
      ? await ca.issue(names)
      : kind === 'expired'
        ? await ca.issue({
            ...names,
            notBefore: new Date('2019-01-01T00:00:00Z'),
            notAfter: new Date('2020-01-01T00:00:00Z'),
          })
        : kind === 'future'
          ? await ca.issue({
              ...names,
              notBefore: new Date('2099-01-01T00:00:00Z'),
              notAfter: new Date('2100-01-01T00:00:00Z'),
            })
          : kind === 'wrong-name'
            ? await ca.issue({ dnsNames: ['elsewhere.test'] })
            : kind === 'self-signed'
              ? await selfSignedCert(names)
              : await otherCa.issue(names);
  const o = await startTlsOrigin(cert, alpn ? { alpn } : {});
  origins.push(o);
  return o;
}

function opts(port: number, extra: Partial<UpstreamTlsOptions> = {}): UpstreamTlsOptions {
  return {
    host: '127.0.0.1',
    port,
    servername: 'origin.test',
    verify: true,
    extraCa: [ca.certPem],
    timeoutMs: 3000,
    ...extra,
  };
}

async function rawServer(onSocket: (s: Socket) => void): Promise<number> {
  const s = createServer((sock) => {
    sock.on('error', () => {});
    onSocket(sock);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

async function expectCode(p: Promise<unknown>, code: string, message?: RegExp): Promise<UpstreamError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof UpstreamError, `expected UpstreamError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}, but it connected`);
}

before(async () => {
  ca = await TestCa.create('test origin CA');
  otherCa = await TestCa.create('unknown CA');
});
after(async () => {
  await Promise.all(origins.map((o) => o.close()));
  for (const s of servers) s.close();
});

describe('connectUpstreamTls', () => {
  test('trusted through extraCa: connects, returns the certificate and the ALPN the server chose', async () => {
    const o = await origin('good', ['h2', 'http/1.1']);
    const up = await connectUpstreamTls(opts(o.port, { alpn: ['http/1.1'] }));
    assert.equal(up.alpn, 'http/1.1');
    assert.equal(up.certificate.subject.CN, 'origin.test');
    assert.match(up.certificate.subjectaltname ?? '', /DNS:origin\.test/);
    up.socket.write('GET / HTTP/1.1\r\n\r\n');
    const reply = await new Promise<string>((r) => up.socket.once('data', (d) => r(d.toString())));
    assert.match(reply, /origin sni=origin\.test alpn=http\/1\.1/);
    up.socket.destroy();
  });

  test('the same origin without our extra root is untrusted (system roots only)', async () => {
    const o = await origin('good');
    await expectCode(
      connectUpstreamTls(opts(o.port, { extraCa: [] })),
      'ERR_UPSTREAM_CERT_UNTRUSTED',
      /not trusted: the chain ends in a root we do not trust \(issuer test origin CA\)/,
    );
  });

  test('signed by a CA we do not trust', async () => {
    const o = await origin('other-ca');
    await expectCode(connectUpstreamTls(opts(o.port)), 'ERR_UPSTREAM_CERT_UNTRUSTED', /issuer unknown CA/);
  });

  test('expired: the reason names the date', async () => {
    const o = await origin('expired');
    await expectCode(
      connectUpstreamTls(opts(o.port)),
      'ERR_UPSTREAM_CERT_EXPIRED',
      /certificate has expired \(notAfter 2020-01-01\)/,
    );
  });

  test('not yet valid', async () => {
    const o = await origin('future');
    await expectCode(
      connectUpstreamTls(opts(o.port)),
      'ERR_UPSTREAM_CERT_EXPIRED',
      /not yet valid \(notBefore 2099-01-01\)/,
    );
  });

  test('wrong name: says which names the certificate has', async () => {
    const o = await origin('wrong-name');
    await expectCode(
      connectUpstreamTls(opts(o.port)),
      'ERR_UPSTREAM_CERT_NAME_MISMATCH',
      /for elsewhere\.test, not origin\.test/,
    );
  });

  test('an IP literal is checked against IP SANs (and not sent as SNI)', async () => {
    const o = await origin('good');
    const up = await connectUpstreamTls(opts(o.port, { servername: undefined }));
    up.socket.write('GET / HTTP/1.1\r\n\r\n');
    const reply = await new Promise<string>((r) => up.socket.once('data', (d) => r(d.toString())));
    assert.match(reply, /origin sni=- /);
    up.socket.destroy();
    const w = await origin('wrong-name');
    await expectCode(
      connectUpstreamTls(opts(w.port, { servername: undefined })),
      'ERR_UPSTREAM_CERT_NAME_MISMATCH',
      /not 127\.0\.0\.1/,
    );
  });

  test('self-signed', async () => {
    const o = await origin('self-signed');
    await expectCode(connectUpstreamTls(opts(o.port)), 'ERR_UPSTREAM_CERT_UNTRUSTED', /self-signed/);
  });

  test('verify: false accepts what verification rejects', async () => {
    const o = await origin('self-signed');
    const up = await connectUpstreamTls(opts(o.port, { verify: false }));
    assert.equal(up.certificate.subject.CN, 'origin.test');
    up.socket.destroy();
  });

  test('refused, silent (timeout), reset during handshake, and a server that does not speak TLS', async () => {
    const closed = await rawServer(() => {});
    servers.at(-1)!.close();
    await expectCode(connectUpstreamTls(opts(closed)), 'ERR_UPSTREAM_REFUSED', /refused/);

    const silent = await rawServer(() => {});
    const t0 = Date.now();
    await expectCode(
      connectUpstreamTls(opts(silent, { timeoutMs: 300 })),
      'ERR_UPSTREAM_TIMEOUT',
      /within 300 ms/,
    );
    assert.ok(Date.now() - t0 < 2000);

    const resetting = await rawServer((s) => s.once('data', () => s.resetAndDestroy()));
    await expectCode(connectUpstreamTls(opts(resetting)), 'ERR_UPSTREAM_RESET');

    const closing = await rawServer((s) => s.once('data', () => s.end()));
    await expectCode(
      connectUpstreamTls(opts(closing)),
      'ERR_UPSTREAM_RESET',
      /closed the connection during the TLS handshake/,
    );

    const http = await rawServer((s) => s.once('data', () => s.write('HTTP/1.1 400 Bad Request\r\n\r\n')));
    await expectCode(connectUpstreamTls(opts(http)), 'ERR_UPSTREAM_TLS', /TLS handshake failed/);
  });

  test('over an already-connected socket (as after STARTTLS)', async () => {
    const o = await origin('good');
    const tcp = netConnect(o.port, '127.0.0.1');
    await new Promise((r) => tcp.once('connect', r));
    const up = await connectUpstreamTls(opts(o.port, { socket: tcp }));
    assert.equal(up.socket.authorized, true);
    up.socket.destroy();
  });
});

/** One request on the connection (so TLS 1.3 tickets arrive), then closed. */
async function exchange(up: UpstreamTls): Promise<void> {
  up.socket.write('GET / HTTP/1.1\r\n\r\n');
  await new Promise((r) => up.socket.once('end', r).resume());
  up.socket.destroy();
}

describe('upstream TLS session resumption', () => {
  test('a verified session is resumed: no certificate on the wire, its verified names kept', async () => {
    const o = await origin('good');
    const cache = new UpstreamSessionCache();
    const first = await connectUpstreamTls(opts(o.port, { sessionCache: cache }));
    assert.equal(first.socket.isSessionReused(), false);
    await exchange(first);
    assert.equal(cache.size, 1);
    for (let i = 0; i < 2; i++) {
      const again = await connectUpstreamTls(opts(o.port, { sessionCache: cache }));
      assert.equal(again.socket.isSessionReused(), true);
      assert.equal(again.socket.authorized, true);
      assert.equal(again.certificate.subject.CN, 'origin.test');
      assert.match(again.certificate.subjectaltname ?? '', /DNS:origin\.test/);
      await exchange(again);
    }
  });

  test('a TLS 1.2 origin: its session (kept whole, with the certificate) resumes authorized', async () => {
    const cert = await ca.issue({ dnsNames: ['origin.test'] });
    const o = await startTlsOrigin(cert, { tls: { maxVersion: 'TLSv1.2' } });
    origins.push(o);
    const cache = new UpstreamSessionCache();
    await exchange(await connectUpstreamTls(opts(o.port, { sessionCache: cache })));
    const again = await connectUpstreamTls(opts(o.port, { sessionCache: cache }));
    assert.equal(again.socket.getProtocol(), 'TLSv1.2');
    assert.equal(again.socket.isSessionReused(), true);
    assert.equal(again.socket.authorized, true);
    assert.equal(again.certificate.subject.CN, 'origin.test');
    await exchange(again);
  });

  test('offered only where the same check passed: other name, roots, verify setting, or no cache', async () => {
    const o = await origin('good');
    const cache = new UpstreamSessionCache();
    await exchange(await connectUpstreamTls(opts(o.port, { sessionCache: cache })));
    const variants: Partial<UpstreamTlsOptions>[] = [
      { servername: 'localhost' },
      { extraCa: [ca.certPem, otherCa.certPem] },
      { verify: false },
      { alpn: ['http/1.1'] },
    ];
    for (const v of variants) {
      const up = await connectUpstreamTls(opts(o.port, { sessionCache: cache, ...v }));
      assert.equal(up.socket.isSessionReused(), false, JSON.stringify(v));
      await exchange(up);
    }
    const none = await connectUpstreamTls(opts(o.port, { sessionCache: false }));
    assert.equal(none.socket.isSessionReused(), false);
    await exchange(none);
  });

  test('a connection that fails verification leaves no session behind', async () => {
    const cache = new UpstreamSessionCache();
    for (const kind of ['wrong-name', 'expired', 'other-ca'] as const) {
      const o = await origin(kind);
      await assert.rejects(connectUpstreamTls(opts(o.port, { sessionCache: cache })), UpstreamError);
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(cache.size, 0);
  });

  test('a session older than maxAgeMs is not offered', async () => {
    const o = await origin('good');
    const cache = new UpstreamSessionCache(16, 1);
    await exchange(await connectUpstreamTls(opts(o.port, { sessionCache: cache })));
    await new Promise((r) => setTimeout(r, 10));
    const up = await connectUpstreamTls(opts(o.port, { sessionCache: cache }));
    assert.equal(up.socket.isSessionReused(), false);
    await exchange(up);
  });
});

describe('ResolveCache', () => {
  test('resolves a name once per TTL and offers the address that accepted first', async () => {
    const port = await rawServer((s) => s.end());
    let asked = 0;
    // A dual-stack name whose server listens on IPv4 only: the first connect is refused on ::1.
    const cache = new ResolveCache(60_000, 16, (_host, _family, cb) => {
      asked++;
      cb(null, [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ]);
    });
    const c = new UpstreamFirstConnector({ resolver: cache });
    const first = await c.connect('dual.test', port);
    assert.equal(first.remoteAddress, '127.0.0.1');
    first.destroy();
    assert.deepEqual(cache.addresses('dual.test'), ['127.0.0.1', '::1']);
    const second = await c.connect('dual.test', port);
    const tried = (second as { autoSelectFamilyAttemptedAddresses?: string[] })
      .autoSelectFamilyAttemptedAddresses;
    assert.deepEqual(tried, [`127.0.0.1:${port}`]);
    second.destroy();
    assert.equal(asked, 1);
  });

  test('failures are not kept: every attempt asks again and gets a typed error', async () => {
    let asked = 0;
    const cache = new ResolveCache(60_000, 16, (host, family, cb) => {
      asked++;
      import('node:dns').then((dns) => dns.lookup(host, { all: true, family }, cb));
    });
    const c = new UpstreamFirstConnector({ resolver: cache });
    for (let i = 0; i < 2; i++)
      await expectCode(
        c.connect('no-such-host.invalid', 80),
        'ERR_UPSTREAM_UNREACHABLE',
        /could not be resolved/,
      );
    assert.equal(asked, 2);
    assert.deepEqual(cache.addresses('no-such-host.invalid'), []);
  });
});

describe('UpstreamFirstConnector', () => {
  test('connects and measures; refusal and DNS failure are typed', async () => {
    const port = await rawServer((s) => s.end());
    const c = new UpstreamFirstConnector();
    const s = await c.connect('127.0.0.1', port);
    assert.ok(c.stats.lastConnectMs >= 0);
    s.destroy();
    servers.at(-1)!.close();
    await expectCode(c.connect('127.0.0.1', port), 'ERR_UPSTREAM_REFUSED');
    await expectCode(
      c.connect('no-such-host.invalid', 80),
      'ERR_UPSTREAM_UNREACHABLE',
      /could not be resolved/,
    );
    assert.equal(c.stats.attempts, 3);
    assert.equal(c.stats.failures, 2);
  });

  test('abort signal stops a pending connect', async () => {
    const c = new UpstreamFirstConnector();
    const ac = new AbortController();
    ac.abort();
    await expectCode(c.connect('127.0.0.1', 1, { signal: ac.signal }), 'ERR_UPSTREAM_TIMEOUT', /aborted/);
  });
});
