/**
 * The thin I/O shell around one socket of an SMTP relay: feeds received bytes to a SmtpReader and
 * lets the session pull events with a deadline; writes with backpressure; swaps the plaintext socket
 * for a TLS one after STARTTLS, dropping whatever was buffered in between.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ProtocolError, ScangateError } from '../../errors.js';
import { type ReaderEvent, SmtpReader } from './reader.js';
import { formatReply, type Reply, ReplyAssembler } from './reply.js';

export class SmtpTimeoutError extends ScangateError {
  constructor(what: string, ms: number) {
    super('ERR_SMTP_TIMEOUT', `${what}: no answer within ${Math.round(ms / 1000)} s`);
  }
}

/** The peer closed or reset the connection while we were waiting for it. */
export class PeerClosedError extends ScangateError {
  constructor(what: string, cause?: unknown) {
    super('ERR_SMTP_PEER_CLOSED', `${what} closed the connection`, { cause });
  }
}

/** Bytes buffered from the peer before we stop reading its socket (backpressure). */
const HIGH_WATER = 256 * 1024;

export class SmtpChannel {
  readonly reader: SmtpReader;
  private stream: Duplex;
  private ended = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private paused = false;
  /** Writes are being gathered (socket corked) until release() or the next wait for the peer. */
  private held = false;
  private readonly assembler = new ReplyAssembler();
  private readonly onData = (chunk: Buffer) => {
    this.reader.push(chunk);
    if (this.reader.buffered > HIGH_WATER && !this.paused) {
      this.paused = true;
      this.stream.pause();
    }
    this.notify();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.notify();
  };
  private readonly onError = (e: Error) => {
    this.failure ??= e;
    this.ended = true;
    this.notify();
  };

  constructor(
    stream: Duplex,
    /** Who the peer is, for error messages ("client", "server 10.0.0.1:25"). */
    readonly peer: string,
    maxLine: number,
  ) {
    this.reader = new SmtpReader(maxLine);
    this.stream = stream;
    this.attach();
  }

  get socket(): Duplex {
    return this.stream;
  }

  get encrypted(): boolean {
    return (this.stream as TLSSocket).encrypted === true;
  }

  get closed(): boolean {
    return this.ended && this.reader.buffered === 0;
  }

  private attach(): void {
    this.stream.on('data', this.onData);
    this.stream.on('end', this.onEnd);
    this.stream.on('close', this.onEnd);
    this.stream.on('error', this.onError);
  }

  private detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    this.stream.off('error', this.onError);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The next reader event if one is already buffered, without waiting (null otherwise). */
  poll(): ReaderEvent | null {
    const ev = this.reader.next();
    if (ev && this.paused && this.reader.buffered < HIGH_WATER / 2) {
      this.paused = false;
      this.stream.resume();
    }
    return ev;
  }

  /**
   * The next reader event, waiting up to `timeoutMs` for bytes. Null when the peer has closed and
   * nothing is left to read.
   */
  async next(timeoutMs: number, what = this.peer): Promise<ReaderEvent | null> {
    for (;;) {
      const ev = this.reader.next();
      if (ev) {
        if (this.paused && this.reader.buffered < HIGH_WATER / 2) {
          this.paused = false;
          this.stream.resume();
        }
        return ev;
      }
      if (this.paused) {
        this.paused = false;
        this.stream.resume();
      }
      if (this.ended) {
        if (this.failure && !isBenignClose(this.failure)) throw new PeerClosedError(what, this.failure);
        return null;
      }
      // About to wait for the peer: whatever we gathered must go out first, or both sides wait.
      this.release();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.wake = null;
          reject(new SmtpTimeoutError(what, timeoutMs));
        }, timeoutMs);
        timer.unref();
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Reads one complete reply (server side). Overlong or malformed lines are a ProtocolError. */
  async readReply(timeoutMs: number, what = this.peer): Promise<Reply> {
    for (;;) {
      const ev = await this.next(timeoutMs, what);
      if (!ev) throw new PeerClosedError(what);
      if (ev.type === 'overlong')
        throw new ProtocolError(
          'ERR_SMTP_BAD_REPLY',
          `${what} sent a reply line longer than ${this.reader.maxLine} octets`,
          502,
        );
      if (ev.type !== 'line') throw new ProtocolError('ERR_SMTP_BAD_REPLY', `${what}: unexpected data`, 502);
      const r = this.assembler.push(ev.line);
      if (r) return r;
    }
  }

  /**
   * Gathers the following writes into one (RFC 2920 §3.1: a server may answer a group of pipelined
   * commands with one batch of replies): the socket is corked until release(), or until this channel
   * must wait — for the peer (next) or for the socket to drain (write) — so nothing gathered is ever
   * held while we wait for an answer to it. Saves a segment and a system call per reply.
   */
  hold(): void {
    if (this.held || this.stream.destroyed) return;
    this.held = true;
    this.stream.cork();
  }

  /** Sends what hold() gathered. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    this.stream.uncork();
  }

  /** Writes and waits for the socket to take it (drain) when its buffer is full. */
  async write(data: Buffer | string): Promise<void> {
    if (this.stream.destroyed || this.stream.writableEnded) throw new PeerClosedError(this.peer);
    if (this.stream.write(data)) return;
    // A full buffer drains only once uncorked.
    this.release();
    await this.drained();
  }

  /**
   * Writes without waiting for the socket while less than `limit` bytes are queued on it, so what is
   * held stays gathered (a message already in memory leaves in one system call instead of one per
   * block); past `limit`, sends what is held and returns the wait for the socket to drain.
   */
  queue(data: Buffer, limit: number): Promise<void> | null {
    if (this.stream.destroyed || this.stream.writableEnded) throw new PeerClosedError(this.peer);
    // A write past the stream's high-water mark asks for a drain: only then is there one to wait for.
    if (this.stream.write(data) || this.stream.writableLength < limit) return null;
    this.release();
    return this.drained();
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        this.stream.off('drain', onDrain);
        this.stream.off('close', onClose);
      };
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(new PeerClosedError(this.peer));
      };
      this.stream.on('drain', onDrain);
      this.stream.on('close', onClose);
    });
  }

  sendReply(r: Reply): Promise<void> {
    return this.write(formatReply(r));
  }

  /**
   * Replaces the socket with the TLS socket `makeTls` builds on it, synchronously, so no byte of the
   * peer's handshake can arrive in between. Everything read but not yet processed is dropped first
   * (CVE-2011-0411 and its mirror, STARTTLS response injection): only bytes that arrive inside TLS
   * count. Returns the TLS socket (its handshake still running) and how many bytes were dropped.
   */
  upgrade<T extends TLSSocket>(makeTls: (raw: Socket) => T): { tls: T; dropped: number } {
    this.release();
    this.detach();
    const raw = this.stream as Socket;
    raw.on('error', () => {});
    const dropped = this.reader.discard();
    if (this.paused) raw.resume();
    this.paused = false;
    this.ended = false;
    this.failure = null;
    const tls = makeTls(raw);
    this.stream = tls;
    this.attach();
    return { tls, dropped };
  }

  /**
   * The same for our own outgoing handshake (we are the TLS client, so the peer sends nothing until
   * our ClientHello and the handshake may take its time). Returns how many bytes were dropped.
   */
  async upgradeAsync(makeTls: (raw: Socket) => Promise<TLSSocket>): Promise<number> {
    this.release();
    this.detach();
    const raw = this.stream as Socket;
    raw.on('error', () => {});
    const dropped = this.reader.discard();
    if (this.paused) raw.resume();
    this.paused = false;
    this.ended = false;
    this.failure = null;
    this.stream = await makeTls(raw);
    this.attach();
    return dropped;
  }

  /** Half-closes after flushing what was written. A pending next() returns null. */
  end(): void {
    this.release();
    this.detach();
    this.ended = true;
    this.notify();
    this.stream.on('error', () => {});
    if (!this.stream.destroyed) this.stream.end();
    const t = setTimeout(() => this.stream.destroy(), 2_000);
    t.unref();
    this.stream.once('close', () => clearTimeout(t));
  }

  destroy(): void {
    this.held = false;
    this.detach();
    this.ended = true;
    this.notify();
    this.stream.on('error', () => {});
    this.stream.destroy();
  }
}

function isBenignClose(e: Error): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' || code === 'EPIPE';
}
