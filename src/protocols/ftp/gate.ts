/**
 * Where one transfer's bytes go on their way through the gateway. A file is held in a spool
 * (memory, then a temp file) until it is complete and judged, so an infected one never reaches the
 * other side, not even in part. Past `holdLimit` (or from the first byte when the server announced
 * a size above it) the file streams instead: the receiving data connection is opened, what was held
 * goes out, and from then on every batch is scanned and released as it arrives except the last
 * `keepBack` bytes, which wait for the verdict (keep-back.ts). After an infected verdict the caller
 * cuts the receiver (`cut()`: a reset, never a clean end), which then has an incomplete file.
 */
import type { Duplex } from 'node:stream';
import type { Spool } from '../../engine/source.js';
import type { Scanner, Verdict } from '../../engine/types.js';
import { resetConnection } from '../../net/splice.js';
import { DataConnectionError, endGracefully, joined, writeChunks } from './data.js';
import { KeepBackScan } from './keep-back.js';

/** Bytes per read when replaying the held part of a file into the stream. */
const REPLAY_CHUNK = 1024 * 1024;

export interface GateOptions {
  spool: Spool;
  /** Files up to this many bytes are held whole; Infinity holds every file. */
  holdLimit: number;
  keepBack: number;
  scanner: Scanner;
  /** The file's name (the verdict's location). */
  name: string;
  /** Stream from the first byte (the announced size is above holdLimit). */
  early: boolean;
  /** Leading bytes that are scanned but not released (a resumed download: REST n). */
  skip: number;
  /** Idle limit of the receiving data connection. */
  idleMs: number;
  /** Opens the receiving data connection, when the first byte is to be released. */
  open(): Promise<Duplex>;
}

export class TransferGate {
  private scan: KeepBackScan | null = null;
  private out: Duplex | null = null;
  private stopIdle: () => void = () => {};
  private wasCut = false;
  private skipLeft: number;
  /** Bytes released to the receiver so far. */
  released = 0;
  /** Why opening the receiver failed (a refusal or a lost server leg), for the caller to act on. */
  openFailure: unknown = null;

  constructor(private readonly o: GateOptions) {
    this.skipLeft = o.skip;
  }

  /** True once the file streams (bytes may have reached the receiver before the verdict). */
  get streaming(): boolean {
    return this.scan !== null;
  }

  /** Takes one received batch (receiveAll's sink). */
  async write(chunks: Buffer[]): Promise<void> {
    if (!this.scan) {
      const size = chunks.reduce((n, c) => n + c.length, this.o.spool.size);
      if (!this.o.early && size <= this.o.holdLimit) return this.o.spool.write(joined(chunks));
      await this.startStreaming();
    }
    await this.forward(chunks);
  }

  private async startStreaming(): Promise<void> {
    try {
      this.out = await this.o.open();
    } catch (e) {
      this.openFailure = e;
      throw e;
    }
    this.out.on('error', () => {});
    this.stopIdle = cutWhenIdle(this.out, this.o.idleMs, () => this.cut());
    this.scan = new KeepBackScan(this.o.scanner, this.o.keepBack, this.o.name);
    const spool = this.o.spool;
    if (spool.size === 0) return;
    const { source } = await spool.finish();
    for await (const c of source.stream(0, source.size, REPLAY_CHUNK)) await this.forward([c]);
  }

  private async forward(chunks: Buffer[]): Promise<void> {
    const { release, caughtUp } = this.scan!.push(chunks);
    if (!caughtUp) return this.send(release);
    await Promise.all([this.send(release), caughtUp]);
  }

  private async send(chunks: Buffer[]): Promise<void> {
    let out = chunks;
    if (this.skipLeft > 0) {
      out = [];
      for (const c of chunks) {
        const drop = Math.min(this.skipLeft, c.length);
        this.skipLeft -= drop;
        if (drop < c.length) out.push(drop ? c.subarray(drop) : c);
      }
    }
    if (out.length === 0) return;
    for (const c of out) this.released += c.length;
    await writeChunks(this.out!, out);
  }

  /** Streaming: the verdict if the scanner has given it before the end (an early hit), else null. */
  get decided(): Verdict | null {
    return this.scan?.decided ?? null;
  }

  /** Streaming, after the last byte: the verdict on the whole file (the tail is still held). */
  verdict(): Promise<Verdict> {
    return this.scan!.finish();
  }

  /** After a verdict that allows it: the held tail, then a clean end of the receiver. */
  async deliver(): Promise<void> {
    const out = this.out!;
    try {
      await this.send(this.scan!.takeTail());
      await endGracefully(out);
      // Cut while closing (the receiver stalled): what it got may be short.
      if (this.wasCut) throw new DataConnectionError('ERR_FTP_DATA_TIMEOUT', 'receiver stalled at the end');
    } finally {
      this.stopIdle();
    }
  }

  /**
   * Cuts the receiver with a reset (a TLS one gets no close_notify): it must not take what it got
   * for a complete file. Stops the scan.
   */
  cut(): void {
    this.wasCut = true;
    this.stopIdle();
    if (this.out && !this.out.destroyed) resetConnection(this.out);
    void this.scan?.cancel();
  }

  async dispose(): Promise<void> {
    if (this.scan) await this.scan.cancel();
    await this.o.spool.dispose();
  }
}

/**
 * Calls `cut` when a connection has moved no byte for `ms`: a stalled receiver is reset like any
 * other failure, never closed cleanly (a clean close would look like the end of the file).
 */
function cutWhenIdle(stream: Duplex, ms: number, cut: () => void): () => void {
  const s = stream as Duplex & { setTimeout?: (ms: number) => void };
  if (!s.setTimeout || !(ms > 0)) return () => {};
  s.setTimeout(ms);
  stream.on('timeout', cut);
  return () => {
    s.setTimeout?.(0);
    stream.off('timeout', cut);
  };
}
