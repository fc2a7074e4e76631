/**
 * Issue 9, "done when" 5: the admin listener refuses requests without the token, and requests
 * from non-loopback addresses by default (even with the token, even when it listens on every
 * address); admin.allow opens it to a chosen network. The generated token is stored 0600 and shown
 * only on the start that created it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveConfig } from '../../src/config/load.js';
import { type Gateway, startGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/logger.js';

let dir: string;
const gateways: Gateway[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-adminauth-'));
});
after(async () => {
  for (const g of gateways) await g.close(100);
  rmSync(dir, { recursive: true, force: true });
});

async function start(admin: Record<string, unknown>, data = 'data'): Promise<Gateway> {
  const g = await startGateway(
    resolveConfig({
      dataDir: join(dir, data),
      log: { level: 'silent' },
      listeners: [{ name: 'web', protocol: 'http', listen: '127.0.0.1:0' }],
      admin,
      events: null,
    }),
    silentLogger,
  );
  gateways.push(g);
  return g;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(
  port: number,
  path: string,
  o: { host?: string; localAddress?: string; headers?: Record<string, string>; method?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: o.host ?? '127.0.0.1',
        port,
        path,
        method: o.method ?? 'GET',
        headers: o.headers,
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
          // An event stream never ends; the head is what we want.
          if (res.headers['content-type']?.startsWith('text/event-stream')) res.destroy();
        });
        res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A local non-loopback IPv4 address (this machine's own), or null. */
function outsideAddress(): string | null {
  for (const addrs of Object.values(networkInterfaces()))
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return null;
}

describe('token', () => {
  let g: Gateway;
  let port: number;
  let token: string;
  before(async () => {
    g = await start({ listen: '127.0.0.1:0' });
    port = g.admin!.address.port;
    token = g.adminToken!.value;
  });

  it('is generated once, stored 0600, and shown only on the start that created it', async () => {
    assert.ok(g.adminToken!.created);
    assert.ok(token.length >= 32);
    const file = join(dir, 'data', 'admin.token');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(g.banner().some((l) => l.includes(token)));
    await g.close(100);
    const again = await start({ listen: '127.0.0.1:0' });
    assert.equal(again.adminToken!.value, token);
    assert.equal(again.adminToken!.created, false);
    assert.ok(!again.banner().some((l) => l.includes(token)));
    g = again;
    port = again.admin!.address.port;
  });

  it('every page but /healthz and a bare /readyz needs it', async () => {
    for (const path of [
      '/',
      '/metrics',
      '/api/overview',
      '/api/events',
      '/api/events/stream',
      '/dashboard.js',
      '/nope',
    ]) {
      const none = await request(port, path);
      assert.equal(none.status, 401, `${path} without a token`);
      assert.ok(!none.body.includes('scangate_'), 'no metric leaks');
      const wrong = await request(port, path, {
        headers: { authorization: `Bearer ${token.slice(0, -1)}x` },
      });
      assert.equal(wrong.status, 401, `${path} with a wrong token`);
    }
    assert.equal(
      (await request(port, '/metrics')).headers['www-authenticate'],
      'Bearer realm="scangate admin"',
    );
    const ok = await request(port, '/metrics', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.match(ok.body, /scangate_connections_total|scangate_signatures/);
    const stream = await request(port, '/api/events/stream', {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(stream.status, 200);
    assert.equal((await request(port, '/healthz')).status, 200);
    const ready = await request(port, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(JSON.parse(ready.body), { status: 'ready' }, 'no details without the token');
    const detailed = await request(port, '/readyz', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(JSON.parse(detailed.body).listeners[0].name, 'web');
    assert.equal(
      (await request(port, '/metrics', { method: 'POST', headers: { authorization: `Bearer ${token}` } }))
        .status,
      405,
    );
  });

  it('the dashboard trades ?token= for an HttpOnly SameSite cookie, and refuses a wrong one', async () => {
    const bad = await request(port, `/?token=${encodeURIComponent(`${token}x`)}`);
    assert.equal(bad.status, 401);
    assert.equal(bad.headers['set-cookie'], undefined);
    const good = await request(port, `/?token=${encodeURIComponent(token)}`);
    assert.equal(good.status, 303);
    assert.equal(good.headers.location, '/');
    const cookie = good.headers['set-cookie']![0]!;
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    const page = await request(port, '/', { headers: { cookie: cookie.split(';')[0]! } });
    assert.equal(page.status, 200);
    assert.match(page.body, /<title>scangate<\/title>/);
    assert.match(page.headers['content-security-policy'] as string, /default-src 'none'/);
    const forged = await request(port, '/', { headers: { cookie: 'scangate_admin=guess' } });
    assert.equal(forged.status, 401);
  });
});

describe('client address', () => {
  it('by default only loopback is allowed; the check is on the peer address', async () => {
    assert.deepEqual(resolveConfig({}).admin?.allow, ['127.0.0.0/8', '::1/128']);
    const g = await start(
      { listen: '0.0.0.0:0', token: 'a-configured-token-of-some-length', allow: ['127.0.0.2/32'] },
      'data4',
    );
    const port = g.admin!.address.port;
    const auth = { authorization: 'Bearer a-configured-token-of-some-length' };
    assert.equal((await request(port, '/metrics', { headers: auth, localAddress: '127.0.0.1' })).status, 403);
    assert.equal((await request(port, '/metrics', { headers: auth, localAddress: '127.0.0.2' })).status, 200);
  });

  it('a non-loopback client is refused by default, even with the token; admin.allow admits it', async (t) => {
    const outside = outsideAddress();
    if (!outside) return t.skip('this machine has no non-loopback IPv4 address to connect from');
    const g = await start({ listen: '0.0.0.0:0', token: 'a-configured-token-of-some-length' }, 'data2');
    const port = g.admin!.address.port;
    const auth = { authorization: 'Bearer a-configured-token-of-some-length' };
    assert.equal(g.adminToken!.file, null);
    for (const path of ['/metrics', '/healthz', '/readyz', '/']) {
      const r = await request(port, path, { host: outside, localAddress: outside, headers: auth });
      assert.equal(r.status, 403, `${path} from ${outside}`);
    }
    assert.equal((await request(port, '/metrics', { headers: auth })).status, 200, 'loopback with the token');

    const open = await start(
      { listen: '0.0.0.0:0', token: 'a-configured-token-of-some-length', allow: [`${outside}/32`] },
      'data3',
    );
    const p2 = open.admin!.address.port;
    assert.equal(
      (await request(p2, '/metrics', { host: outside, localAddress: outside, headers: auth })).status,
      200,
    );
    assert.equal(
      (await request(p2, '/metrics', { host: outside, localAddress: outside })).status,
      401,
      'still needs the token',
    );
    assert.equal(
      (await request(p2, '/metrics', { headers: auth })).status,
      403,
      'loopback is no longer in the list',
    );
  });
});

describe('readiness', () => {
  it('/readyz is 503 when a listener cannot reach its upstream, 200 when it can', async () => {
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const up = (server.address() as AddressInfo).port;
    const down = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const token = 'a-configured-token-of-some-length';
    const readyz = async (upstream: number, data: string) => {
      const g = await startGateway(
        resolveConfig({
          dataDir: join(dir, data),
          log: { level: 'silent' },
          listeners: [
            {
              name: 'mail',
              protocol: 'smtp',
              listen: '127.0.0.1:0',
              upstream: `127.0.0.1:${upstream}`,
              tls: { client: 'none', upstream: 'none' },
            },
          ],
          admin: { listen: '127.0.0.1:0', token },
          events: null,
        }),
        silentLogger,
      );
      gateways.push(g);
      const r = await request(g.admin!.address.port, '/readyz', {
        headers: { authorization: `Bearer ${token}` },
      });
      return { status: r.status, body: JSON.parse(r.body) as { listeners: { upstream?: string }[] } };
    };
    const bad = await readyz(down, 'data5');
    assert.equal(bad.status, 503);
    assert.match(bad.body.listeners[0]!.upstream!, /^unreachable \(127\.0\.0\.1:\d+: ECONNREFUSED\)$/);
    const good = await readyz(up, 'data6');
    assert.equal(good.status, 200);
    assert.equal(good.body.listeners[0]!.upstream, 'reachable');
    server.close();
  });
});
