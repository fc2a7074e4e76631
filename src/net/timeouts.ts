/**
 * Time limits every protocol session needs, so a slow or silent peer cannot hold a connection (and its
 * memory) forever:
 * - idle: no byte in either direction for N ms ends the connection (dead peers, abandoned tunnels);
 * - header/command deadline: a complete request head (HTTP headers, SMTP command, FTP command, TLS
 *   ClientHello) must arrive within N ms of its first byte, however slowly it trickles — the slowloris
 *   defence, which an idle timer alone does not give because each trickled byte resets it;
 * - handshake deadline: a TLS handshake must finish within N ms.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Ends `socket` after `ms` without traffic either way. Returns a function that removes the timer.
 * Uses the socket's own inactivity timer (reads and writes both count).
 */
export function applyIdleTimeout(socket: Socket, ms: number, onIdle?: () => void): () => void {
  if (!(ms > 0)) return () => {};
  const handler = () => {
    onIdle?.();
    socket.destroy();
  };
  socket.setTimeout(ms);
  socket.on('timeout', handler);
  return () => {
    socket.setTimeout(0);
    socket.off('timeout', handler);
  };
}

/**
 * A deadline that does not move when bytes arrive: armed when a request head starts, disarmed when it is
 * complete. If it fires, `onExpire` runs (e.g. send 408 / 421) and then the stream is destroyed after
 * `graceMs` so the reply can leave.
 */
export class Deadline {
  private timer: NodeJS.Timeout | null = null;
  private fired = false;

  constructor(
    private readonly stream: Duplex,
    private readonly ms: number,
    private readonly onExpire?: () => void,
    private readonly graceMs = 1_000,
  ) {}

  get expired(): boolean {
    return this.fired;
  }

  /** Arms the deadline if not armed yet (idempotent: each trickled byte may call it). */
  start(): void {
    if (this.timer || this.fired || !(this.ms > 0)) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.fired = true;
      try {
        this.onExpire?.();
      } finally {
        const t = setTimeout(() => this.stream.destroy(), this.graceMs);
        t.unref();
        this.stream.once('close', () => clearTimeout(t));
      }
    }, this.ms);
    this.timer.unref?.();
  }

  /** Disarms it (the awaited head arrived); start() arms it again for the next one. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * Races `promise` against a timer; rejects with `makeError()` when the timer wins. The timer never keeps
 * the process alive.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, makeError: () => Error): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return promise;
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(makeError()), ms);
    timer.unref?.();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
