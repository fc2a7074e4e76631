/**
 * The rest of an upload refused for its size, read and dropped. In stream mode the sender ends an
 * upload by closing the data connection (RFC 959 §3.2); a receiver that closes it first, mid-send,
 * makes the client's next write fail with a reset, and curl then gives up on the control connection
 * too (exit 55) and never reads the 552 that says why. So the gateway keeps reading the client's
 * bytes, and drops them, until the client ends (then closes its side cleanly: the client goes on to
 * read the reply) or `budget` more bytes arrived or the connection was silent for `idleMs` (then a
 * reset, as before). None of these bytes goes anywhere.
 */
import type { Duplex } from 'node:stream';
import { resetConnection } from '../../net/splice.js';

export interface Overflow {
  /** Settles once the connection is closed: 'ended' after the sender's own end, 'reset' otherwise. */
  readonly done: Promise<'ended' | 'reset'>;
  /** Bytes read and dropped so far. */
  readonly dropped: () => number;
  /** Resets the connection now (the transfer failed some other way). */
  stop(): void;
}

export function discardRest(stream: Duplex, budget: number, idleMs: number): Overflow {
  let dropped = 0;
  const stop = () => {
    if (!stream.destroyed) resetConnection(stream);
  };
  const done = new Promise<'ended' | 'reset'>((resolve) => {
    const s = stream as Duplex & { setTimeout?: (ms: number) => void };
    const onData = (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > budget) stop();
    };
    // The client's end: ours follows (TLS close_notify, then FIN), and 'close' comes once both went.
    const onEnd = () => stream.end();
    const onClose = () => {
      s.setTimeout?.(0);
      stream.off('data', onData);
      stream.off('timeout', stop);
      resolve(stream.readableEnded ? 'ended' : 'reset');
    };
    stream.on('error', () => {});
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onClose);
    if (idleMs > 0 && s.setTimeout) {
      s.setTimeout(idleMs);
      stream.on('timeout', stop);
    }
    if (stream.destroyed) onClose();
    else stream.resume();
  });
  return { done, dropped: () => dropped, stop };
}
