/**
 * The I/O shell around the sans-IO ICAP parser: the socket stays paused until the session asks for
 * the next event, so a client sending faster than the scanner reads is held back by TCP flow
 * control, never by buffering here.
 */
import type { Socket } from 'node:net';
import type { IcapEvent } from './messages.js';
import type { IcapParser } from './parser.js';

export class IcapReader {
  private wake: (() => void) | null = null;
  private ended = false;

  private readonly onData = (d: Buffer) => {
    this.parser.push(d);
    this.socket.pause();
    this.onBytes?.();
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.parser.pushEnd();
    this.notify();
  };

  /** Called whenever bytes arrive (the session arms its head deadline on the first byte of a head). */
  onBytes: (() => void) | null = null;

  constructor(
    readonly socket: Socket,
    readonly parser: IcapParser,
  ) {
    socket.pause();
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onEnd);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Ends a pending next() with null (shutdown, deadline). */
  interrupt(): void {
    this.ended = true;
    this.notify();
  }

  /** The next parser event; null once nothing more will come (end of input, or after an error event). */
  async next(): Promise<IcapEvent | null> {
    for (;;) {
      const e = this.parser.next();
      if (e) return e;
      if (this.parser.done || this.ended || this.socket.destroyed) return null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.socket.resume();
      });
    }
  }
}
