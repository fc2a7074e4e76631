/**
 * Message mode end to end (issue 6, done-when 3): the client library over mTLS to the gateway, a
 * pool of backend connections to an in-process backend. Wrong MACs are disconnected before anything
 * is forwarded; heartbeats close silent peers on both legs; a backend restart mid-stream loses no
 * acknowledged message.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { TunnelClientError } from '../../src/protocols/tunnel/client.js';
import {
  decodeErrorPayload,
  ErrorCode,
  encodeFrame,
  FrameDecoder,
  FrameType,
  MacState,
} from '../../src/protocols/tunnel/frame.js';
import { sessionMacs } from '../../src/protocols/tunnel/keys.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { TestBackend } from '../helpers/tunnel-backend.js';
import {
  connectClient,
  eventsOf,
  startTunnel,
  type TunnelUnderTest,
  until,
} from '../helpers/tunnel-gateway.js';
import { type IssuedCert, tunnelPki } from '../helpers/tunnel-pki.js';

describe('tunnel message mode', () => {
  let pki: Awaited<ReturnType<typeof tunnelPki>>;
  let alice: IssuedCert;
  const cleanups: (() => Promise<void> | void)[] = [];

  before(async () => {
    pki = await tunnelPki();
    alice = await pki.ca.issue({ commonName: 'alice', uri: ['spiffe://bank.example/payments/alice'] });
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    pki.dir.cleanup();
  });

  async function setup(
    extra: Record<string, unknown> = {},
    backendOpts: ConstructorParameters<typeof TestBackend>[0] = { record: true },
  ): Promise<{ gw: TunnelUnderTest; backend: TestBackend }> {
    const backend = await new TestBackend(backendOpts).start();
    const gw = await startTunnel({
      mode: 'message',
      upstream: `127.0.0.1:${backend.port}`,
      tls: pki.files,
      allow: { uri: ['spiffe://bank.example/payments/*'] },
      ...extra,
    });
    cleanups.push(
      () => gw.close(),
      () => backend.stop(),
    );
    await until(() => gw.service.backendReady > 0, 'a backend connection');
    return { gw, backend };
  }

  /** A raw TLS client that speaks frames itself (to send what the library never would). */
  async function rawClient(
    port: number,
  ): Promise<{ socket: TLSSocket; macs: ReturnType<typeof sessionMacs> }> {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: pki.ca.certPem,
      cert: alice.certPem,
      key: alice.keyPem,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return { socket, macs: sessionMacs(socket) };
  }

  /** Every frame the gateway sends until it closes, MAC-verified. */
  function framesUntilClose(
    socket: TLSSocket,
    mac: MacState,
  ): Promise<{ type: number; id: number; payload: Buffer }[]> {
    const decoder = new FrameDecoder({ mac });
    const frames: { type: number; id: number; payload: Buffer }[] = [];
    socket.on('data', (c: Buffer) => {
      decoder.push(c);
      for (let f = decoder.next(); f; f = decoder.next())
        frames.push({ ...f, payload: Buffer.from(f.payload) });
    });
    socket.on('error', () => {});
    return new Promise((resolve) => socket.once('close', () => resolve(frames)));
  }

  it('carries many pipelined requests over one connection and answers each one', async () => {
    const { gw, backend } = await setup(
      {},
      { record: true, handler: (p) => Buffer.concat([Buffer.from('ack:'), p]) },
    );
    const client = await connectClient(gw.port, alice, pki.files.clientCa);
    cleanups.push(() => client.close());
    const answers = await Promise.all(
      Array.from({ length: 500 }, (_, i) => client.request(Buffer.from(`payment ${i}`))),
    );
    assert.deepEqual(
      answers.map((a) => a.toString()),
      answers.map((_, i) => `ack:payment ${i}`),
    );
    assert.equal(backend.received.length, 500);
    assert.equal(gw.events.events.length, 0, JSON.stringify(gw.events.events));
  });

  it('disconnects a client whose frame has a wrong MAC, and never forwards that frame', async () => {
    const { gw, backend } = await setup();
    const { socket, macs } = await rawClient(gw.port);
    const got = framesUntilClose(socket, macs.gatewayToClient);
    // One good request, then one whose MAC was computed with a wrong key, then another good one.
    socket.write(encodeFrame(FrameType.REQUEST, 1, Buffer.from('good'), macs.clientToGateway));
    const forged = encodeFrame(
      FrameType.REQUEST,
      2,
      Buffer.from('forged'),
      new MacState(Buffer.alloc(32, 7)),
    );
    macs.clientToGateway.next(Buffer.alloc(0)); // keep our sequence in step with what we claimed
    socket.write(forged);
    socket.write(encodeFrame(FrameType.REQUEST, 3, Buffer.from('after'), macs.clientToGateway));
    const frames = await got;
    const goaway = frames.find((f) => f.type === FrameType.GOAWAY);
    assert.ok(goaway, 'a GOAWAY frame before the close');
    assert.equal(decodeErrorPayload(goaway.payload).code, ErrorCode.BAD_MAC);
    const ev = await eventsOf(gw.events, 'frame-error');
    assert.match(ev[0]!.reason!, /ERR_FRAME_MAC/);
    assert.equal(ev[0]!.object, 'alice');
    await until(() => backend.received.some((b) => b.toString() === 'good'), 'the good frame forwarded');
    const seen = backend.received.map((b) => b.toString());
    assert.ok(!seen.includes('forged'), 'the forged frame never reached the backend');
    assert.ok(!seen.includes('after'), 'nothing after the forged frame reached the backend');
  });

  it('refuses a frame replayed from another TLS session (MAC keys are bound to the session)', async () => {
    const { gw, backend } = await setup();
    const first = await rawClient(gw.port);
    const recorded = encodeFrame(FrameType.REQUEST, 9, Buffer.from('replayed'), first.macs.clientToGateway);
    first.socket.destroy();
    const second = await rawClient(gw.port);
    const got = framesUntilClose(second.socket, second.macs.gatewayToClient);
    second.socket.write(recorded);
    const frames = await got;
    assert.equal(decodeErrorPayload(frames.at(-1)!.payload).code, ErrorCode.BAD_MAC);
    assert.ok(!backend.received.some((b) => b.toString() === 'replayed'));
  });

  it('closes a client that stops answering heartbeats within the configured time', async () => {
    const { gw } = await setup({ heartbeat: { interval: '100ms', timeout: '400ms' } });
    const { socket, macs } = await rawClient(gw.port);
    const frames = await framesUntilClose(socket, macs.gatewayToClient); // we never answer the PINGs
    assert.ok(
      frames.some((f) => f.type === FrameType.PING),
      'the gateway pinged first',
    );
    assert.equal(decodeErrorPayload(frames.at(-1)!.payload).code, ErrorCode.HEARTBEAT_TIMEOUT);
    const ev = await eventsOf(gw.events, 'heartbeat-timeout');
    assert.equal(ev[0]!.object, 'alice');
  });

  it('keeps a client that answers heartbeats (the library does) past many timeouts', async () => {
    const { gw } = await setup({ heartbeat: { interval: '100ms', timeout: '600ms' } });
    const client = await connectClient(gw.port, alice, pki.files.clientCa, {
      heartbeatIntervalMs: 100,
      heartbeatTimeoutMs: 600,
    });
    cleanups.push(() => client.close());
    const socket = client.socket;
    // Idle (no requests) for several heartbeat timeouts: only PING/PONG keep it alive.
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(client.socket, socket, 'still the same connection');
    assert.equal((await client.request(Buffer.from('x'))).toString(), 'x');
    assert.equal(gw.events.events.filter((e) => e.kind === 'heartbeat-timeout').length, 0);
  });

  it('drops a backend connection that stops answering heartbeats, fails its requests and reconnects', async () => {
    const { gw, backend } = await setup({
      heartbeat: { interval: '100ms', timeout: '400ms' },
      backend: { connections: 1, backoffMin: '50ms', backoffMax: '200ms' },
    });
    const client = await connectClient(gw.port, alice, pki.files.clientCa);
    cleanups.push(() => client.close());
    backend.silent = true;
    const pending = client.request(Buffer.from('into the void')).then(
      () => null,
      (e: TunnelClientError) => e,
    );
    const err = await pending;
    assert.equal(err?.code, 'ERR_TUNNEL_REMOTE');
    assert.equal(err?.wireCode, ErrorCode.BACKEND_LOST);
    const ev = await eventsOf(gw.events, 'heartbeat-timeout');
    assert.match(ev[0]!.server!, /127\.0\.0\.1/);
    backend.silent = false;
    await until(() => backend.accepted >= 2 && gw.service.backendReady === 1, 'the backend reconnect');
    assert.equal((await client.request(Buffer.from('back'))).toString(), 'back');
  });

  it('absorbs a backend restart mid-stream: every request is answered or failed, none acknowledged is lost', async () => {
    const { gw, backend } = await setup({
      backend: { connections: 2, backoffMin: '20ms', backoffMax: '200ms' },
    });
    const client = await connectClient(gw.port, alice, pki.files.clientCa);
    cleanups.push(() => client.close());
    const total = 3000;
    const acked: string[] = [];
    const failed: string[] = [];
    let restarted = false;
    const window = 64;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const msg = `m${next++}`;
        try {
          const a = await client.request(Buffer.from(msg), { timeoutMs: 10_000 });
          assert.equal(a.toString(), msg);
          acked.push(msg);
        } catch (e) {
          assert.equal((e as TunnelClientError).code, 'ERR_TUNNEL_REMOTE', String(e));
          assert.equal((e as TunnelClientError).wireCode, ErrorCode.BACKEND_LOST, String(e));
          failed.push(msg);
        }
        if (!restarted && acked.length >= total / 3) {
          restarted = true;
          // Hold answers for a moment so requests are surely in flight at the backend when it dies.
          backend.silent = true;
          await new Promise((r) => setTimeout(r, 50));
          await backend.stop();
          backend.silent = false;
          setTimeout(() => void backend.start(), 200);
        }
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
    assert.ok(restarted);
    assert.ok(failed.length > 0, 'requests in flight at the restart failed with BACKEND_LOST, not silently');
    assert.equal(acked.length + failed.length, total, 'every request got an answer or an error');
    const seen = new Set(backend.received.map((b) => b.toString()));
    const lost = acked.filter((m) => !seen.has(m));
    assert.deepEqual(lost, [], 'every acknowledged message reached the backend');
    assert.ok(
      acked.length > total / 2,
      `most requests succeeded (${acked.length} acked, ${failed.length} failed)`,
    );
    assert.ok(backend.accepted >= 3, 'the pool reconnected after the restart');
  });

  it('client library: in-flight requests fail clearly when the gateway goes away, and it reconnects', async () => {
    const { gw } = await setup();
    const client = await connectClient(gw.port, alice, pki.files.clientCa, {
      backoffMinMs: 20,
      backoffMaxMs: 100,
    });
    cleanups.push(() => client.close());
    assert.equal((await client.request(Buffer.from('one'))).toString(), 'one');
    let disconnected = 0;
    client.on('disconnected', () => disconnected++);
    client.socket!.destroy();
    await until(() => client.connected && disconnected === 1, 'the client reconnect');
    assert.equal((await client.request(Buffer.from('two'))).toString(), 'two');
  });

  it('scan: true — an infected request is answered with ERROR INFECTED and never forwarded', async () => {
    const { gw, backend } = await setup({ scan: true });
    const client = await connectClient(gw.port, alice, pki.files.clientCa);
    cleanups.push(() => client.close());
    const err = await client.request(EICAR).then(
      () => null,
      (e: TunnelClientError) => e,
    );
    assert.equal(err?.wireCode, ErrorCode.INFECTED);
    assert.match(err!.message, new RegExp(EICAR_NAME));
    assert.equal((await client.request(Buffer.from('clean payment'))).toString(), 'clean payment');
    const ev = await eventsOf(gw.events, 'verdict');
    assert.equal(ev[0]!.signature, EICAR_NAME);
    assert.equal(ev[0]!.action, 'blocked');
    assert.deepEqual(
      backend.received.map((b) => b.toString()),
      ['clean payment'],
    );
  });
});
