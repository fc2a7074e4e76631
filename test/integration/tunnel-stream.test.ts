/**
 * Stream mode moves bytes faithfully under load: many megabytes in writes of random sizes arrive at
 * the backend complete and in order (the client → backend direction is batched per event-loop turn,
 * src/protocols/tunnel/stream.ts), a backend that stops reading for a while loses nothing, the
 * backend's answer after the client's FIN still comes back (half-close), and an echo of several
 * megabytes comes back byte for byte.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { dialTunnel, startTunnel, type TunnelUnderTest } from '../helpers/tunnel-gateway.js';
import { type EchoBackend, startEchoBackend } from '../helpers/tunnel-peers.js';
import { type IssuedCert, tunnelPki } from '../helpers/tunnel-pki.js';

type Pki = Awaited<ReturnType<typeof tunnelPki>>;

/** Reads until FIN (after `stallMs` without reading), then answers "<bytes> <sha256 hex>" and ends. */
async function startHashBackend(stallMs: number): Promise<{ port: number; server: Server }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('error', () => {});
    s.pause();
    setTimeout(() => s.resume(), stallMs);
    s.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    s.on('end', () => s.end(`${n} ${h.digest('hex')}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, server };
}

/** Writes `data` in pieces of random size (honouring backpressure), then FIN. */
async function sendInPieces(s: TLSSocket, data: Buffer): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = Math.min(data.length - off, 1 + Math.floor(Math.random() * 100_000));
    if (!s.write(data.subarray(off, off + n))) await new Promise((r) => s.once('drain', r));
    off += n;
  }
  s.end();
}

/** Everything the peer sends until its FIN. */
function readAll(s: TLSSocket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

describe('tunnel stream mode carries bulk data intact', () => {
  let pki: Pki;
  let alice: IssuedCert;
  const stops: (() => Promise<void> | void)[] = [];

  before(async () => {
    pki = await tunnelPki();
    alice = await pki.ca.issue({ commonName: 'alice' });
  });
  after(async () => {
    for (const s of stops.reverse()) await s();
    pki?.dir.cleanup();
  });

  async function through(upstreamPort: number): Promise<TunnelUnderTest> {
    const gw = await startTunnel({ mode: 'stream', upstream: `127.0.0.1:${upstreamPort}`, tls: pki.files });
    stops.push(() => gw.close());
    return gw;
  }

  for (const [name, stallMs, size] of [
    ['a backend reading at once', 0, 24 << 20],
    ['a backend that stops reading for a while', 700, 12 << 20],
  ] as const)
    it(`client → backend, ${size >> 20} MB to ${name}: every byte, in order, and the answer after FIN`, async () => {
      const backend = await startHashBackend(stallMs);
      stops.push(() => new Promise<void>((r) => backend.server.close(() => r())));
      const gw = await through(backend.port);
      const data = randomBytes(size);
      const s = await dialTunnel(gw.port, pki.ca.certPem, alice);
      const answer = readAll(s);
      await sendInPieces(s, data);
      assert.equal((await answer).toString(), `${size} ${createHash('sha256').update(data).digest('hex')}`);
      s.destroy();
    });

  it('both ways at once: an echo of 8 MB comes back byte for byte', async () => {
    const echo: EchoBackend = await startEchoBackend();
    stops.push(() => echo.close());
    const gw = await through(echo.port);
    const data = randomBytes(8 << 20);
    const s = await dialTunnel(gw.port, pki.ca.certPem, alice);
    const back = readAll(s);
    await sendInPieces(s, data);
    assert.ok((await back).equals(data));
    s.destroy();
  });
});
