/**
 * The listener's discipline: only allowed client networks get in (others are reset), at most
 * maxConnections at once, close() drains until its deadline; cidrMatch for v4, v6 and v4-mapped v6.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { cidrMatch, compileAllowList, createTcpListener, type TcpListener } from '../../src/net/listener.js';

const listeners: TcpListener[] = [];
after(async () => {
  for (const l of listeners) await l.close(10);
});

test('cidrMatch: IPv4, IPv6, IPv4-mapped IPv6, bare addresses, junk', () => {
  assert.equal(cidrMatch('127.0.0.1', '127.0.0.0/8'), true);
  assert.equal(cidrMatch('127.0.0.2', '127.0.0.1/32'), false);
  assert.equal(cidrMatch('10.1.2.3', '10.0.0.0/8'), true);
  assert.equal(cidrMatch('11.1.2.3', '10.0.0.0/8'), false);
  assert.equal(cidrMatch('192.168.1.77', '192.168.1.64/26'), true);
  assert.equal(cidrMatch('192.168.1.128', '192.168.1.64/26'), false);
  assert.equal(cidrMatch('::1', '::1/128'), true);
  assert.equal(cidrMatch('::1', '::1'), true);
  assert.equal(cidrMatch('2001:db8::5', '2001:db8::/32'), true);
  assert.equal(cidrMatch('2001:db9::5', '2001:db8::/32'), false);
  assert.equal(cidrMatch('::ffff:127.0.0.1', '127.0.0.0/8'), true);
  assert.equal(cidrMatch('::ffff:10.0.0.1', '127.0.0.0/8'), false);
  assert.equal(cidrMatch('1.2.3.4', '0.0.0.0/0'), true);
  assert.equal(cidrMatch('not-an-ip', '0.0.0.0/0'), false);
  assert.equal(cidrMatch('1.2.3.4', 'garbage'), false);
  assert.throws(() => compileAllowList(['10.0.0.0/33']), ConfigError);
  assert.throws(() => compileAllowList(['example.com']), ConfigError);
});

test('property: an IPv4 address matches a prefix exactly when its top bits agree', () => {
  const ip = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
  fc.assert(
    fc.property(ip, ip, fc.integer({ min: 0, max: 32 }), (a, b, prefix) => {
      const toInt = (x: number[]) => ((x[0]! << 24) | (x[1]! << 16) | (x[2]! << 8) | x[3]!) >>> 0;
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      const expected = (toInt(a) & mask) === (toInt(b) & mask);
      assert.equal(cidrMatch(a.join('.'), `${b.join('.')}/${prefix}`), expected);
      assert.equal(cidrMatch(`::ffff:${a.join('.')}`, `${b.join('.')}/${prefix}`), expected);
    }),
    { numRuns: 2000 },
  );
});

async function listen(
  allow: string[] | undefined,
  maxConnections = 10,
): Promise<{ l: TcpListener; port: number; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const l = await createTcpListener({
    name: 't',
    listen: '127.0.0.1:0',
    ...(allow ? { allow } : {}),
    maxConnections,
    logger: silentLogger,
    onConnection: (s) => {
      accepted.push(s);
      s.on('error', () => {});
      // Half-open is allowed on listeners; this handler closes its side when the client does.
      s.on('end', () => s.end());
      s.write('hello\n');
    },
  });
  listeners.push(l);
  return { l, port: (l.address as AddressInfo).port, accepted };
}

/** Connects (optionally from a given local address) and reports the first data or the error. */
function dial(
  port: number,
  localAddress?: string,
): Promise<{ data?: string; error?: string; socket: Socket }> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
    s.once('data', (d) => resolve({ data: d.toString(), socket: s }));
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code, socket: s }));
    s.once('end', () => resolve({ error: 'end', socket: s }));
  });
}

test('allow-list: a client from 127.0.0.2 is reset when only 127.0.0.1/32 is allowed', async () => {
  const { port, accepted } = await listen(['127.0.0.1/32']);
  const ok = await dial(port, '127.0.0.1');
  assert.equal(ok.data, 'hello\n');
  const denied = await dial(port, '127.0.0.2');
  assert.equal(denied.error, 'ECONNRESET');
  assert.equal(accepted.length, 1);
  ok.socket.destroy();
});

test('default allow-list is loopback only', async () => {
  const { port } = await listen(undefined);
  const r = await dial(port, '127.0.0.2');
  assert.equal(r.data, 'hello\n', '127.0.0.0/8 is loopback');
  r.socket.destroy();
});

test('maxConnections: the connection beyond the limit is reset; a slot frees when one closes', async () => {
  const { l, port } = await listen(['127.0.0.0/8'], 2);
  const a = await dial(port);
  const b = await dial(port);
  assert.equal(a.data, 'hello\n');
  assert.equal(b.data, 'hello\n');
  const c = await dial(port);
  assert.equal(c.error, 'ECONNRESET');
  a.socket.destroy();
  while (l.connections.size >= 2) await new Promise((r) => setTimeout(r, 5));
  const d = await dial(port);
  assert.equal(d.data, 'hello\n');
  b.socket.destroy();
  d.socket.destroy();
});

test('close(): stops accepting, then destroys connections still open at the deadline', async () => {
  const { l, port } = await listen(['127.0.0.0/8']);
  const a = await dial(port);
  const t0 = Date.now();
  await l.close(150);
  const elapsed = Date.now() - t0;
  assert.ok(elapsed >= 140 && elapsed < 2000, `closed after ${elapsed} ms`);
  assert.equal(l.connections.size, 0);
  const after = await dial(port);
  assert.equal(after.error, 'ECONNREFUSED');
  a.socket.destroy();
});

test('a port already in use is a ConfigError naming the listener', async () => {
  const { port } = await listen(['127.0.0.0/8']);
  await assert.rejects(
    createTcpListener({
      name: 'dup',
      listen: `127.0.0.1:${port}`,
      maxConnections: 1,
      logger: silentLogger,
      onConnection: () => {},
    }),
    (e: Error) =>
      e instanceof ConfigError && /address already in use/.test(e.message) && /dup/.test(e.message),
  );
});
