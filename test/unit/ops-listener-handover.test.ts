/**
 * Reload's socket handover (net/listener.ts): between beginHandover() and endHandover() a listener
 * for an address already bound adopts the socket; new connections reach the new handler, the old
 * listener's close() waits only for its own connections and leaves the socket open; a socket nobody
 * claims is closed by its old owner.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { silentLogger } from '../../src/logger.js';
import { beginHandover, createTcpListener, endHandover } from '../../src/net/listener.js';
import { refused } from '../helpers/ops-cli.js';

function listener(name: string, tag: string, listen = '127.0.0.1:0') {
  return createTcpListener({
    name,
    listen,
    maxConnections: 100,
    logger: silentLogger,
    onConnection: (s: Socket) => {
      s.on('error', () => {});
      // Half-open sockets (allowHalfOpen): answer the client's FIN as a protocol would.
      s.on('end', () => s.end());
      s.write(tag);
    },
  });
}

/** Connects and returns the first bytes the server wrote, plus the socket. */
function hello(port: number): Promise<{ tag: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.once('data', (d) => resolve({ tag: d.toString(), socket: s }));
    s.once('error', reject);
  });
}

test('the new generation takes the socket over; the old one drains only its own connections', async () => {
  const a = await listener('web', 'A');
  const port = (a.address as AddressInfo).port;
  const first = await hello(port);
  assert.equal(first.tag, 'A');

  beginHandover();
  const b = await listener('web', 'B');
  assert.equal(endHandover(), 0, 'every bound socket was claimed');
  assert.equal((b.address as AddressInfo).port, port, 'same socket, same port (even for listen :0)');

  const second = await hello(port);
  assert.equal(second.tag, 'B', 'new connections reach the new handler');

  let aClosed = false;
  const closing = a.close(10_000).then(() => {
    aClosed = true;
  });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(aClosed, false, 'the old generation waits for its open connection');
  assert.equal((await hello(port)).tag, 'B', 'the socket stays open while the old generation drains');
  first.socket.destroy();
  await closing;
  assert.equal((await hello(port)).tag, 'B');

  second.socket.destroy();
  await b.close(100);
  assert.ok(await refused(port), 'closing the last owner closes the socket');
});

test('a socket nobody claims stays with its old owner, which closes it', async () => {
  const a = await listener('gone', 'A');
  const port = (a.address as AddressInfo).port;
  beginHandover();
  const other = await listener('other', 'O');
  assert.equal(endHandover(), 1, 'the "gone" socket was not claimed');
  assert.notEqual((other.address as AddressInfo).port, port);
  assert.equal((await hello(port)).tag, 'A', 'still served by the old generation until it closes');
  await a.close(100);
  assert.ok(await refused(port));
  await other.close(100);
});

test('without a handover in progress, binding a bound address fails as before', async () => {
  const a = await listener('x', 'A');
  const port = (a.address as AddressInfo).port;
  await assert.rejects(listener('x', 'B', `127.0.0.1:${port}`), /address already in use/);
  await a.close(100);
});
