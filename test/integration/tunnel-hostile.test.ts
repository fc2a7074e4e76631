/**
 * Issue 6, done-when 6 on the wire: truncated, oversized and garbage frames (and garbage instead of
 * TLS) close that one connection cleanly with an event; the gateway keeps serving everyone else.
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { registry } from '../../src/admin/metrics.js';
import {
  decodeErrorPayload,
  ErrorCode,
  encodeFrame,
  FrameDecoder,
  FrameType,
} from '../../src/protocols/tunnel/frame.js';
import { sessionMacs } from '../../src/protocols/tunnel/keys.js';
import { TestBackend } from '../helpers/tunnel-backend.js';
import { connectClient, startTunnel, type TunnelUnderTest, until } from '../helpers/tunnel-gateway.js';
import { type IssuedCert, tunnelPki } from '../helpers/tunnel-pki.js';

/** The tunnel listener's client-side TLS handshakes so far, from the process-wide metrics registry. */
async function tlsCount(metric: string): Promise<number> {
  const values = (await registry.getSingleMetric(metric)?.get())?.values ?? [];
  return values.filter((v) => v.labels.listener === 'tunnel').reduce((n, v) => n + v.value, 0);
}

describe('tunnel message mode under hostile input', () => {
  let pki: Awaited<ReturnType<typeof tunnelPki>>;
  let alice: IssuedCert;
  let gw: TunnelUnderTest;
  let backend: TestBackend;

  before(async () => {
    pki = await tunnelPki();
    alice = await pki.ca.issue({ commonName: 'alice' });
    backend = await new TestBackend({ record: true }).start();
    gw = await startTunnel({
      mode: 'message',
      upstream: `127.0.0.1:${backend.port}`,
      tls: pki.files,
      maxFrameSize: '64KB',
    });
    await until(() => gw.service.backendReady > 0, 'backend connections');
  });
  after(async () => {
    await gw?.close();
    await backend?.stop();
    pki?.dir.cleanup();
  });

  /** Opens a TLS session, sends `bytes(macs)` (then FIN if asked), returns what came back and the new events. */
  async function send(
    bytes: (macs: ReturnType<typeof sessionMacs>) => Buffer,
    fin = false,
  ): Promise<{ goaway: { code: number; message: string } | null; kinds: string[]; reasons: string[] }> {
    const before = gw.events.events.length;
    const socket: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port: gw.port,
      servername: 'localhost',
      ca: pki.ca.certPem,
      cert: alice.certPem,
      key: alice.keyPem,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    const macs = sessionMacs(socket);
    const decoder = new FrameDecoder({ mac: macs.gatewayToClient });
    let goaway: { code: number; message: string } | null = null;
    socket.on('data', (c: Buffer) => {
      decoder.push(c);
      for (let f = decoder.next(); f; f = decoder.next())
        if (f.type === FrameType.GOAWAY) goaway = decodeErrorPayload(f.payload);
    });
    socket.on('error', () => {});
    const closed = new Promise((r) => socket.once('close', r));
    if (fin) socket.end(bytes(macs));
    else socket.write(bytes(macs));
    await closed;
    await until(() => gw.events.events.length > before, 'an event');
    const ev = gw.events.events.slice(before);
    return { goaway, kinds: ev.map((e) => e.kind), reasons: ev.map((e) => e.reason ?? '') };
  }

  it('garbage bytes: GOAWAY BAD_FRAME, event, close', async () => {
    const r = await send(() => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(r.goaway?.code, ErrorCode.BAD_FRAME);
    assert.deepEqual(r.kinds, ['frame-error']);
    assert.match(r.reasons[0]!, /ERR_FRAME_VERSION/);
  });

  it('an oversized frame header: GOAWAY FRAME_TOO_LARGE without waiting for the payload', async () => {
    const r = await send(() => {
      const h = encodeFrame(FrameType.REQUEST, 1);
      h.writeUInt32BE(10 * 1024 * 1024, 8);
      return h;
    });
    assert.equal(r.goaway?.code, ErrorCode.FRAME_TOO_LARGE);
    assert.match(r.reasons[0]!, /ERR_FRAME_TOO_LARGE/);
  });

  it('a truncated frame then FIN: event naming the truncation, connection closed', async () => {
    const r = await send(
      (m) =>
        encodeFrame(FrameType.REQUEST, 1, Buffer.from('partial payment'), m.clientToGateway).subarray(0, 20),
      true,
    );
    assert.deepEqual(r.kinds, ['frame-error']);
    assert.match(r.reasons[0]!, /ERR_FRAME_TRUNCATED/);
  });

  it('a frame type only the gateway may send: GOAWAY UNEXPECTED_FRAME', async () => {
    const r = await send((m) => encodeFrame(FrameType.RESPONSE, 1, Buffer.from('x'), m.clientToGateway));
    assert.equal(r.goaway?.code, ErrorCode.UNEXPECTED_FRAME);
  });

  it('plain TCP garbage instead of a TLS handshake: tls-failure event, counted in /metrics', async () => {
    const before = gw.events.events.length;
    const failed = await tlsCount('scangate_tls_handshake_failures_total');
    await new Promise<void>((resolve) => {
      const s = netConnect(gw.port, '127.0.0.1', () => s.write(Buffer.alloc(300, 0x41)));
      s.on('error', () => {});
      s.on('close', () => resolve());
      s.resume();
    });
    await until(() => gw.events.events.length > before, 'the tls-failure event');
    assert.equal(gw.events.events.at(-1)!.kind, 'tls-failure');
    assert.equal(await tlsCount('scangate_tls_handshake_failures_total'), failed + 1);
  });

  it('after all that, a well-behaved client is served and the backend saw no hostile payload', async () => {
    const done = await tlsCount('scangate_tls_handshakes_total');
    const c = await connectClient(gw.port, alice, pki.files.clientCa);
    assert.equal((await c.request(Buffer.from('ok'))).toString(), 'ok');
    // Answered, so the gateway's side of the handshake is done too (a TLS 1.3 client finishes first).
    assert.equal(await tlsCount('scangate_tls_handshakes_total'), done + 1);
    await c.close();
    assert.deepEqual(
      backend.received.map((b) => b.toString()),
      ['ok'],
    );
  });
});
