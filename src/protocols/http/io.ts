/**
 * The thin I/O shell around the sans-IO parser: pull events from a socket with backpressure, and
 * write with drain awaited.
 *
 * The reader keeps the socket flowing and queues what arrives, pausing it only once READ_AHEAD bytes
 * wait unparsed; when the session asks for more, everything queued goes to the parser at once. So a
 * body that arrives while the session is busy (scanning, waiting for the other side to drain) is
 * handed out as one large slice instead of one event per 16 KiB TLS record, and the socket is not
 * stopped and restarted for every record (each of which costs system calls). Memory per connection
 * stays bounded by READ_AHEAD plus one chunk.
 */
import type { Duplex } from 'node:stream';
import type { HttpEvent, HttpParser } from './parser.js';

/** Unparsed bytes a reader holds before it pauses its socket. */
export const READ_AHEAD = 128 * 1024;

export class MessageReader {
  private wake: (() => void) | null = null;
  private ended = false;
  /** The end has been passed on to the parser (only once every queued byte has been). */
  private endPushed = false;
  private failure: Error | null = null;
  private detached = false;
  private queue: Buffer[] = [];
  private queued = 0;
  private pausedByUs = false;
  /** Bytes received from the socket so far (header-timeout bookkeeping: did the client send anything?). */
  received = 0;

  private readonly onData = (d: Buffer) => {
    this.received += d.length;
    this.queue.push(d);
    this.queued += d.length;
    if (this.queued >= READ_AHEAD && !this.pausedByUs) {
      this.pausedByUs = true;
      this.socket.pause();
    }
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
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
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    socket.resume();
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

  /** The peer's side has ended (bytes already received may still be waiting to be parsed). */
  get eof(): boolean {
    return this.ended;
  }

  /** True between messages with no byte of the next one received yet. */
  get idle(): boolean {
    return this.queued === 0 && this.parser.idle;
  }

  /** Moves every queued byte into the parser; true when there was any. */
  private feedParser(): boolean {
    if (this.queued === 0) return false;
    const q = this.queue;
    this.parser.push(q.length === 1 ? q[0]! : Buffer.concat(q, this.queued));
    this.queue = [];
    this.queued = 0;
    if (this.pausedByUs && !this.detached) {
      this.pausedByUs = false;
      this.socket.resume();
    }
    return true;
  }

  /** The next parser event; null once the parser is done (clean end, error already returned, tunnel). */
  async next(): Promise<HttpEvent | null> {
    for (;;) {
      const e = this.parser.next();
      if (e) return e;
      if (this.parser.done || this.detached) return null;
      if (this.feedParser()) continue;
      if (this.ended) {
        if (this.endPushed) return null;
        // Every byte is in the parser: now it may report a truncated message or a close-delimited end.
        this.endPushed = true;
        this.parser.pushEnd();
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
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
    const parsedRest = this.parser.takeBuffered();
    const rest = this.queued ? Buffer.concat([parsedRest, ...this.queue]) : parsedRest;
    this.queue = [];
    this.queued = 0;
    return rest;
  }
}

/** Writes and waits for the kernel buffer to drain when the stream asks for it; rejects once it is gone. */
export function send(stream: Duplex, data: Buffer | Buffer[]): Promise<void> {
  const parts = Array.isArray(data) ? data : [data];
  if (stream.destroyed || stream.writableEnded) return Promise.reject(new Error('connection closed'));
  let ok = true;
  // Several parts go down as one writev: for TLS one SSL_write (full records) and one system call.
  const batch = parts.length > 1;
  if (batch) stream.cork();
  for (const p of parts) if (p.length) ok = stream.write(p);
  if (batch) stream.uncork();
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
