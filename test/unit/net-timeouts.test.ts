/**
 * Time limits (idle, fixed deadline against slowloris, promise timeout) on real sockets, and the
 * sockaddr decoding behind SO_ORIGINAL_DST (the kernel path itself: test/interop/transparent-redirect).
 */
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { decodeSockaddr, getOriginalDestination } from '../../src/net/original-dst.js';
import { applyIdleTimeout, Deadline, withTimeout } from '../../src/net/timeouts.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

async function pair(): Promise<{ client: Socket; served: Socket }> {
  let deliver!: (s: Socket) => void;
  const next = new Promise<Socket>((r) => {
    deliver = r;
  });
  const server = createServer((s) => deliver(s));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = netConnect((server.address() as AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  const served = await next;
  sockets.push(client, served);
  return { client, served };
}

test('idle timeout: traffic keeps the connection, silence ends it', async () => {
  const { client, served } = await pair();
  let idled = false;
  // The idle limit is far above the gap between writes, so a loaded machine's late timers cannot
  // make a 50 ms gap look like silence.
  applyIdleTimeout(served, 1000, () => {
    idled = true;
  });
  served.resume();
  for (let i = 0; i < 5; i++) {
    client.write('x');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(idled, false, 'bytes every 50 ms keep a 1 s idle timer from firing');
  await new Promise((r) => served.once('close', r));
  assert.equal(idled, true);
});

test('Deadline: a trickling request head is cut at the deadline even though bytes keep arriving', async () => {
  const { client, served } = await pair();
  let expired = false;
  const deadline = new Deadline(
    served,
    150,
    () => {
      expired = true;
      served.write('408 too slow\n');
    },
    50,
  );
  served.on('data', () => deadline.start());
  const got: string[] = [];
  client.on('data', (d) => got.push(d.toString()));
  const t0 = Date.now();
  const timer = setInterval(() => client.write('a'), 20);
  await new Promise((r) => served.once('close', r));
  clearInterval(timer);
  const elapsed = Date.now() - t0;
  assert.equal(expired, true);
  assert.ok(elapsed >= 150 && elapsed < 1000, `cut after ${elapsed} ms`);
  await new Promise((r) => setTimeout(r, 20));
  assert.match(got.join(''), /408 too slow/);
});

test('Deadline: stop() disarms it, start() re-arms for the next head', async () => {
  const { served } = await pair();
  let fired = 0;
  const d = new Deadline(served, 60, () => {
    fired++;
  });
  d.start();
  d.stop();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(fired, 0);
  d.start();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(fired, 1);
  assert.equal(d.expired, true);
});

test('withTimeout: resolves when in time, rejects with the given error otherwise', async () => {
  assert.equal(await withTimeout(Promise.resolve(5), 100, () => new Error('late')), 5);
  await assert.rejects(
    withTimeout(new Promise(() => {}), 30, () => new Error('late')),
    /late/,
  );
});

test('decodeSockaddr: sockaddr_in and sockaddr_in6 as the kernel writes them', () => {
  const v4 = Buffer.alloc(16);
  v4.writeUInt16LE(2, 0);
  v4.writeUInt16BE(443, 2);
  Buffer.from([10, 1, 2, 3]).copy(v4, 4);
  assert.deepEqual(decodeSockaddr(v4), { address: '10.1.2.3', port: 443 });

  const v6 = Buffer.alloc(28);
  v6.writeUInt16LE(10, 0);
  v6.writeUInt16BE(8443, 2);
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(v6, 8);
  assert.deepEqual(decodeSockaddr(v6), { address: '2001:db8::1', port: 8443 });
  Buffer.from('00000000000000000000ffff7f000002', 'hex').copy(v6, 8);
  assert.deepEqual(decodeSockaddr(v6), { address: '::ffff:127.0.0.2', port: 8443 });
  Buffer.from('00000000000000000000000000000001', 'hex').copy(v6, 8);
  assert.deepEqual(decodeSockaddr(v6), { address: '::1', port: 8443 });

  assert.equal(decodeSockaddr(Buffer.alloc(4)), null);
  const unknown = Buffer.alloc(16);
  unknown.writeUInt16LE(1, 0);
  assert.equal(decodeSockaddr(unknown), null);
});

test('getOriginalDestination: a connection that was not redirected gives null', async () => {
  const { served } = await pair();
  assert.equal(getOriginalDestination(served), null);
});
