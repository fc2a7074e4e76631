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

export interface SpliceOptions {
  idleTimeoutMs?: number;
  /** Called as bytes pass, with the running totals. */
  onBytes?: (aToB: number, bToA: number) => void;
  /**
   * a → b: what is read in one turn of the event loop leaves in one writev at its end (setImmediate)
   * instead of one write per chunk. For a TLS `a`, whose decrypted data comes in chunks of at most
   * 16 KB, several per socket read: each written alone is a syscall and a wake-up of the reader
   * (tunnel stream bench: ~1.5 -> ~1.1 s gateway CPU per GB). `b` needs a writableHighWaterMark
   * above one turn's reads, or it pauses `a` at every batch.
   */
  coalesceAToB?: boolean;
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
    relay(a, b, countA, opts.coalesceAToB === true);
    relay(b, a, countB, false);
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
 * end()) but with one 'data' listener that counts, writes and batches: pipe() plus a counting
 * listener (plus a batching one) made every chunk's emit copy the listener array and make three
 * calls, per 16 KB of a TLS stream.
 */
function relay(from: SpliceSocket, to: SpliceSocket, count: (n: number) => void, coalesce: boolean): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    to.uncork();
  };
  let paused = false;
  from.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (coalesce && !corked) {
      corked = true;
      to.cork();
      setImmediate(uncork);
    }
    if (!to.write(chunk) && !paused) {
      paused = true;
      from.pause();
    }
  });
  to.on('drain', () => {
    if (!paused) return;
    paused = false;
    from.resume();
  });
  from.once('end', () => to.end());
  // As pipe() does: a socket someone paused before (a parser that stopped at the end of its head)
  // flows from here on, unless `to` is already full.
  if ((to as Writable).writableNeedDrain) {
    paused = true;
    from.pause();
  } else from.resume();
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
