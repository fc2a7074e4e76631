/**
 * splice over real TCP sockets: 20 MB of random data both ways at once arrives byte-exact, bytes read
 * before the splice go first, a stopped reader stops the writer, a FIN in either direction is
 * forwarded while the other direction keeps flowing, an idle splice ends, and a reset on one side
 * takes down the other.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { resetConnection, splice } from '../../src/net/splice.js';

const servers: Server[] = [];
const sockets: Socket[] = [];
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

/**
 * Two TCP connections meeting in the middle: `left` (client end) ↔ [a | splice | b] ↔ `right` (server end).
 */
async function topology(): Promise<{ left: Socket; right: Socket; a: Socket; b: Socket }> {
  const accept = () =>
    new Promise<{ server: Server; port: number; next: Promise<Socket> }>((resolve) => {
      let deliver: (s: Socket) => void;
      const next = new Promise<Socket>((r) => {
        deliver = r;
      });
      const server = createServer({ allowHalfOpen: true }, (s) => deliver(s));
      servers.push(server);
      server.listen(0, '127.0.0.1', () =>
        resolve({ server, port: (server.address() as AddressInfo).port, next }),
      );
    });
  const front = await accept();
  const back = await accept();
  const left = netConnect({ port: front.port, host: '127.0.0.1', allowHalfOpen: true });
  const a = await front.next;
  const b = netConnect({ port: back.port, host: '127.0.0.1', allowHalfOpen: true });
  const right = await back.next;
  await new Promise((r) => b.once('connect', r));
  sockets.push(left, right, a, b);
  return { left, right, a, b };
}

function collect(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('20 MB each way at once, byte-exact, counted', async () => {
  const { left, right, a, b } = await topology();
  const up = randomBytes(20 * 1024 * 1024);
  const down = randomBytes(20 * 1024 * 1024);
  let progress = 0;
  const done = splice(a, b, { onBytes: () => progress++ });
  const gotRight = collect(right);
  const gotLeft = collect(left);
  left.end(up);
  right.end(down);
  const [r, l, result] = await Promise.all([gotRight, gotLeft, done]);
  assert.equal(r.length, up.length);
  assert.equal(sha(r), sha(up));
  assert.equal(l.length, down.length);
  assert.equal(sha(l), sha(down));
  assert.deepEqual(
    { aToB: result.aToB, bToA: result.bToA, reason: result.reason },
    {
      aToB: up.length,
      bToA: down.length,
      reason: 'closed',
    },
  );
  assert.ok(progress > 0);
});

test('bytes read before the splice, buffered or pushed back by a parser, go first and in order', async () => {
  const { left, right, a, b } = await topology();
  a.pause();
  left.write('buffered ');
  while (a.readableLength === 0) await new Promise((r) => setTimeout(r, 5));
  a.unshift(Buffer.from('unshifted '));
  const done = splice(a, b);
  const got = collect(right);
  left.end('then streamed');
  assert.equal((await got).toString(), 'unshifted buffered then streamed');
  right.end();
  await done;
});

test('a reader that stops stops the writer: memory stays bounded, then every byte arrives', async () => {
  const { left, right, a, b } = await topology();
  const data = randomBytes(48 * 1024 * 1024);
  right.pause();
  const done = splice(a, b);
  left.end(data);
  // Wait until the relay stops taking bytes from the writer.
  let last = -1;
  while (a.bytesRead !== last) {
    last = a.bytesRead;
    await new Promise((r) => setTimeout(r, 200));
  }
  // What is in flight is the kernel's buffers on both connections plus one write queue, not the file.
  assert.ok(a.bytesRead < 24 * 1024 * 1024, `relay read ${a.bytesRead} bytes while its reader was stopped`);
  assert.ok(b.writableLength <= 2 * 256 * 1024, `relay queued ${b.writableLength} bytes`);
  const got = collect(right);
  right.resume();
  const all = await got;
  assert.equal(all.length, data.length);
  assert.equal(sha(all), sha(data));
  right.end();
  await done;
});

test('half-close client → server: the server sees EOF and can still answer', async () => {
  const { left, right, a, b } = await topology();
  const done = splice(a, b);
  const gotLeft = collect(left);
  left.end('request, then FIN');
  const req = await collect(right);
  assert.equal(req.toString(), 'request, then FIN');
  // The server answers after the client's FIN: the reverse direction is still open.
  right.end('late answer');
  assert.equal((await gotLeft).toString(), 'late answer');
  assert.equal((await done).reason, 'closed');
});

test('half-close server → client: the client can keep sending after the server finished', async () => {
  const { left, right, a, b } = await topology();
  const done = splice(a, b);
  const gotRight = collect(right);
  right.end('banner and FIN');
  assert.equal((await collect(left)).toString(), 'banner and FIN');
  left.end('data after server FIN');
  assert.equal((await gotRight).toString(), 'data after server FIN');
  await done;
});

test('idle timeout destroys both sides', async () => {
  const { left, right, a, b } = await topology();
  left.on('error', () => {});
  right.on('error', () => {});
  const t0 = Date.now();
  const result = await splice(a, b, { idleTimeoutMs: 150 });
  assert.equal(result.reason, 'idle');
  assert.ok(Date.now() - t0 >= 140);
  assert.ok(a.destroyed && b.destroyed);
  // Both peers are told (FIN): their half-open sockets see the end of the stream.
  left.resume();
  right.resume();
  const ended = (x: Socket) => (x.readableEnded ? Promise.resolve() : new Promise((r) => x.once('end', r)));
  await Promise.all([ended(left), ended(right)]);
  left.destroy();
  right.destroy();
});

test('a reset on one side resets/destroys the other', async () => {
  const { left, right, a, b } = await topology();
  const rightClosed = new Promise<string | undefined>((resolve) => {
    right.on('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    right.on('end', () => resolve('end'));
    right.on('close', () => resolve(undefined));
  });
  const done = splice(a, b);
  left.write('x');
  await new Promise((r) => right.once('data', r));
  resetConnection(left);
  const result = await done;
  assert.equal(result.reason, 'error');
  // The server side is told too (FIN or RST, depending on what was in flight).
  assert.ok(['end', 'ECONNRESET', undefined].includes(await rightClosed));
  assert.ok(b.destroyed);
  right.destroy();
});

test('resetConnection sends RST: the peer sees ECONNRESET', async () => {
  const { left, a } = await topology();
  const err = new Promise<string | undefined>((resolve) => {
    left.on('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    left.on('close', () => resolve('closed without error'));
  });
  resetConnection(a);
  assert.equal(await err, 'ECONNRESET');
});

test('resetConnection after end() still closes the socket (Node loses a reset-while-shutting handle)', async () => {
  const { a } = await topology();
  a.on('error', () => {});
  const closed = new Promise<void>((resolve) => a.once('close', () => resolve()));
  a.end();
  resetConnection(a);
  // Before the fix the reset was refused (EINVAL), no 'close' ever came and the process spun at exit.
  const never = new Promise<'never'>((resolve) => setTimeout(() => resolve('never'), 10_000).unref());
  assert.notEqual(await Promise.race([closed, never]), 'never', "no 'close' after the reset");
  assert.equal(a.destroyed, true);
});
