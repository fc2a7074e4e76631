/**
 * Reading a relayed socket into one buffer the whole process reuses, instead of a fresh Buffer per
 * chunk. Every chunk a socket normally emits is a new ArrayBuffer (for TLS: one per 16 KB record),
 * allocated, pushed through the Readable machinery and later swept by the GC; for a relay that
 * copies the bytes on at once, all of that is waste (tunnel stream bench: ~1.3 → ~0.9 s of gateway
 * CPU per GB, most of the gap to stunnel).
 *
 * Node has the mechanism — the `onread: { buffer, callback }` socket option — but honours it only
 * for sockets it creates itself (net.connect, tls.connect), never for a socket a server accepted or
 * a TLSSocket wrapping one, which is every socket a gateway relays. This switches an existing socket
 * over to it: the same fields the option sets, and the handle's useUserBuffer(). From then on
 * net.Socket's own code runs it: pause() and resume() stop and start the handle's reads, EOF still
 * ends the Readable, timeouts are still refreshed by every read.
 *
 * The sink sees a view of the shared buffer that is valid only until it returns: it must copy what
 * it keeps. Where Node does not have what this needs (another version, a socket without a native
 * handle), `readShared` says so and the caller reads the ordinary way.
 */
import { Socket } from 'node:net';

/** Called with each chunk read; false asks for reading to stop until the socket is resumed. */
export type SharedReadSink = (chunk: Buffer) => boolean;

/** One read's worth for a TCP socket (libuv reads at most 64 KB at a time); a TLS record is ≤ 16 KB. */
const SHARED_SIZE = 64 * 1024;

interface OnreadSymbols {
  buffer: symbol;
  callback: symbol;
  generator: symbol | undefined;
}

let symbols: OnreadSymbols | null | undefined;
let shared: Buffer | null = null;

/** The private fields net.Socket keeps for `onread`, found by their names on a socket built with it. */
function onreadSymbols(): OnreadSymbols | null {
  if (symbols !== undefined) return symbols;
  symbols = null;
  try {
    // The option is typed for net.connect() only, but the constructor is what reads it.
    const onread = { buffer: Buffer.alloc(1), callback: () => true };
    const probe = new Socket({ onread } as ConstructorParameters<typeof Socket>[0]);
    const own = Object.getOwnPropertySymbols(probe);
    const named = (name: string) => own.find((s) => s.description === name);
    const buffer = named('kBuffer');
    const callback = named('kBufferCb');
    probe.destroy();
    if (buffer && callback) symbols = { buffer, callback, generator: named('kBufferGen') };
  } catch {
    // Left null: every caller reads the ordinary way.
  }
  return symbols;
}

type HandleWithUserBuffer = { useUserBuffer?: (buf: Uint8Array) => void };

/**
 * Switches `socket` to the shared read buffer and starts it flowing; what it had already buffered
 * goes to the sink first, in order. Returns false, changing nothing, when this cannot be done here.
 */
export function readShared(socket: unknown, sink: SharedReadSink): boolean {
  if (!(socket instanceof Socket)) return false;
  const handle = (socket as Socket & { _handle?: HandleWithUserBuffer | null })._handle;
  const sym = onreadSymbols();
  if (!sym || !handle || typeof handle.useUserBuffer !== 'function' || socket.destroyed) return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  if (fields[sym.buffer]) return false;

  // Bytes that arrived before the switch (read during a handshake, or unshifted by a parser) were
  // already pushed into the Readable: they go first. read() returns them all at once, then null.
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
    sink(chunk);
  }
  shared ??= Buffer.allocUnsafe(SHARED_SIZE);
  const buf = shared;
  fields[sym.buffer] = buf;
  fields[sym.callback] = (n: number) => sink(buf.subarray(0, n));
  if (sym.generator) fields[sym.generator] = null;
  handle.useUserBuffer(buf);
  // Flowing, so EOF still emits 'end'. No data is ever pushed into the Readable again, so resume()
  // only starts the handle's reads.
  socket.resume();
  return true;
}
