/**
 * Byte-for-byte relay between two sockets, for traffic we do not inspect (passthrough hosts, protocols
 * that are not ours, the data leg of a tunnel). Nothing is parsed; what matters is that the bytes,
 * the half-closes and the failures of one side reach the other side faithfully:
 * - FIN on one side becomes end() on the other, and data keeps flowing the other way (TCP half-close);
 * - backpressure: a slow reader stops the fast writer's socket from being read;
 * - an error or reset on one side destroys both; no byte either way for idleTimeoutMs destroys both.
 */
import type { Socket } from 'node:net';
import type { Duplex, Writable } from 'node:stream';
import { CoalescingWriter } from './coalescing-writer.js';
import { readShared } from './shared-read.js';

export interface SpliceOptions {
  idleTimeoutMs?: number;
  /** Called as bytes pass, with the running totals. */
  onBytes?: (aToB: number, bToA: number) => void;
}

export interface SpliceResult {
  aToB: number;
  bToA: number;
  /** Why it ended: both sides closed normally, one failed, or it sat idle. */
  reason: 'closed' | 'error' | 'idle';
}

type SpliceSocket = Socket | (Duplex & { setTimeout?: Socket['setTimeout'] });

export function splice(a: SpliceSocket, b: SpliceSocket, opts: SpliceOptions = {}): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let aToB = 0;
    let bToA = 0;
    let reason: SpliceResult['reason'] = 'closed';
    let closed = 0;
    let finished = false;
    // Without this a net.Socket answers a received FIN by ending its own side too, which would cut the
    // direction that is still sending (half-close, RFC 9293 §3.6).
    for (const s of [a, b]) (s as { allowHalfOpen: boolean }).allowHalfOpen = true;

    const countA = (n: number) => {
      aToB += n;
      opts.onBytes?.(aToB, bToA);
    };
    const countB = (n: number) => {
      bToA += n;
      opts.onBytes?.(aToB, bToA);
    };
    const fail = (why: SpliceResult['reason']) => () => {
      if (reason === 'closed') reason = why;
      a.destroy();
      b.destroy();
    };
    const onError = fail('error');
    const onIdle = fail('idle');
    const onClose = (s: SpliceSocket) => () => {
      closed++;
      // A side that closed without finishing both directions (destroyed by its owner, or aborted)
      // takes the other with it; a clean close means the other side is finishing too.
      const other = s === a ? b : a;
      if (!(s.readableEnded && s.writableFinished)) other.destroy();
      if (closed === 2 && !finished) {
        finished = true;
        for (const x of [a, b]) {
          x.off('error', onError);
          x.off('timeout', onIdle);
          x.setTimeout?.(0);
        }
        resolve({ aToB, bToA, reason });
      }
    };
    const closeHandlers = new Map([a, b].map((s) => [s, onClose(s)] as const));
    for (const s of [a, b]) {
      s.on('error', onError);
      s.once('close', closeHandlers.get(s)!);
      if (opts.idleTimeoutMs && s.setTimeout) {
        s.setTimeout(opts.idleTimeoutMs);
        s.on('timeout', onIdle);
      }
    }
    relay(a, b, countA);
    relay(b, a, countB);
    if (a.destroyed || b.destroyed) {
      a.destroy();
      b.destroy();
    }
    // A socket that had already closed will never emit 'close' again.
    for (const s of [a, b]) {
      if ((s as Duplex).closed) {
        s.off('close', closeHandlers.get(s)!);
        closeHandlers.get(s)!();
      }
    }
  });
}

/**
 * One direction of a splice, as pipe() does it (a full `to` pauses `from` until 'drain'; EOF becomes
 * end()). A socket is read into the process's shared buffer and what one turn of the event loop read
 * leaves in one write (shared-read.ts, coalescing-writer.ts: ~30 % less CPU per byte than a fresh
 * Buffer per chunk and a write each). Anything else — a stream without a native handle — is read
 * the ordinary way, one write per chunk.
 */
function relay(from: SpliceSocket, to: SpliceSocket, count: (n: number) => void): void {
  let paused = false;
  const pause = () => {
    if (paused) return;
    paused = true;
    from.pause();
  };
  to.on('drain', () => {
    if (!paused) return;
    paused = false;
    from.resume();
  });
  const writer = new CoalescingWriter(to);
  const shared = readShared(from, (chunk) => {
    count(chunk.length);
    if (writer.push(chunk)) return true;
    // Returning false makes the socket stop reading; 'drain' resumes it.
    paused = true;
    return false;
  });
  if (shared) {
    from.once('end', () => {
      writer.flush();
      to.end();
    });
    if (paused || (to as Writable).writableNeedDrain) {
      paused = false;
      pause();
    }
    return;
  }
  from.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!to.write(chunk)) pause();
  });
  from.once('end', () => to.end());
  // As pipe() does: a socket someone paused before (a parser that stopped at the end of its head)
  // flows from here on, unless `to` is already full.
  if ((to as Writable).writableNeedDrain) pause();
  else from.resume();
}

/**
 * Aborts a TCP connection with RST instead of FIN, so the client sees "connection reset" just as it
 * would from a server that is down (mirroring upstream failure, DESIGN 1). For a TLS socket the RST
 * goes out on the TCP socket beneath it.
 */
export function resetConnection(socket: Socket | Duplex): void {
  // After end() our FIN is on its way and a reset buys nothing; worse, Node 20 then loses the
  // handle (libuv refuses the reset of a shutting-down socket with EINVAL, the wrap is marked
  // closing all the same): the descriptor leaks and the process spins at exit.
  if ((socket as Duplex).writableEnded) {
    (socket as Duplex).destroy();
    return;
  }
  let s: unknown = socket;
  for (let depth = 0; depth < 3 && s; depth++) {
    const candidate = s as Socket & { _parent?: unknown; _handle?: { constructor?: { name?: string } } };
    if (
      typeof candidate.resetAndDestroy === 'function' &&
      candidate._handle?.constructor?.name === 'TCP' &&
      !candidate.writableEnded
    ) {
      try {
        candidate.resetAndDestroy();
        if (candidate !== socket) (socket as Duplex).destroy();
        return;
      } catch {
        break;
      }
    }
    s = candidate._parent;
  }
  (socket as Duplex).destroy();
}
