/**
 * The thin I/O shell around the sans-IO parser: pull events from a socket with backpressure (the
 * socket stays paused unless the session asks for more), and write with drain awaited.
 */
import type { Duplex } from 'node:stream';
import type { HttpEvent, HttpParser } from './parser.js';

export class MessageReader {
  private wake: (() => void) | null = null;
  private ended = false;
  private failure: Error | null = null;
  private detached = false;
  /** Bytes received from the socket so far (header-timeout bookkeeping: did the client send anything?). */
  received = 0;

  private readonly onData = (d: Buffer) => {
    this.received += d.length;
    this.parser.push(d);
    this.socket.pause();
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.parser.pushEnd();
    this.notify();
  };
  private readonly onError = (e: Error) => {
    this.failure ??= e;
    this.onEnd();
  };

  constructor(
    readonly socket: Duplex,
    readonly parser: HttpParser,
  ) {
    socket.pause();
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The socket error that ended the input, if it did not end cleanly. */
  get error(): Error | null {
    return this.failure;
  }

  get eof(): boolean {
    return this.ended;
  }

  /** The next parser event; null once the parser is done (clean end, error already returned, tunnel). */
  async next(): Promise<HttpEvent | null> {
    for (;;) {
      const e = this.parser.next();
      if (e) return e;
      if (this.parser.done || this.detached) return null;
      if (this.ended) {
        // Already told the parser; if it still wants bytes it will report truncation on next().
        const again = this.parser.next();
        if (again) return again;
        return null;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.socket.resume();
      });
    }
  }

  /** Stops reading and returns the bytes received but not parsed (e.g. the first bytes of a tunnel). */
  detach(): Buffer {
    this.detached = true;
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    // Keep an error listener so a reset after detaching is never an uncaught exception.
    this.socket.on('error', () => {});
    this.socket.pause();
    this.notify();
    return this.parser.takeBuffered();
  }
}

/** Writes and waits for the kernel buffer to drain when the stream asks for it; rejects once it is gone. */
export function send(stream: Duplex, data: Buffer | Buffer[]): Promise<void> {
  const parts = Array.isArray(data) ? data : [data];
  if (stream.destroyed || stream.writableEnded) return Promise.reject(new Error('connection closed'));
  let ok = true;
  for (const p of parts) if (p.length) ok = stream.write(p);
  if (ok) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      stream.off('error', onClose);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(new Error('connection closed'));
    };
    stream.on('drain', onDrain);
    stream.on('close', onClose);
    stream.on('error', onClose);
  });
}

/** Ends the writable side after flushing, and destroys the stream if the peer does not close in time. */
export function endGracefully(stream: Duplex, lingerMs = 2000): void {
  if (stream.destroyed) return;
  stream.end();
  const t = setTimeout(() => stream.destroy(), lingerMs);
  t.unref();
  stream.once('close', () => clearTimeout(t));
  // Drain whatever the peer still sends so its writes do not fail before it reads our answer.
  stream.on('data', () => {});
  stream.resume();
}
