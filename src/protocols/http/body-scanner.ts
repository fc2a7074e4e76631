/**
 * Scanning one message body on its way through (request upload or response download).
 *
 * Bodies up to `holdLimit` are held whole (memory, then a temp file) until the verdict, so an
 * infected object never leaves, not even in part; they are scanned once complete, as a Buffer or by
 * path, which spares the engine a stream and a second copy. Larger bodies, or bodies whose length
 * was unknown and grew past the limit, stream: the scanner reads them while they arrive, everything
 * but the last `keepBack` bytes is released as it arrives and the tail waits for the verdict (HAVP's
 * KEEPBACKBUFFER). If the verdict is infected after bytes were released, the caller cuts the
 * transfer (c-icap's "partiallyblocked"): the receiver has an incomplete object and no terminating
 * chunk.
 *
 * With a Content-Encoding the raw bytes are always scanned: a server that lies about the encoding
 * (raw malware labelled "br") cannot slip through an undecodable lane. gzip the engine unpacks
 * itself (as ClamAV does), so a gzip-only body needs no second lane; for deflate and br the decoded
 * bytes are scanned in a second lane, which finds what only the decoded form shows. Forwarded bytes
 * are always the original ones.
 */
import type { Writable } from 'node:stream';
import { PassThrough, pipeline, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { BufferSource, type ObjectSource, Spool } from '../../engine/source.js';
import { type Scanner, scanFailure, type Verdict } from '../../engine/types.js';
import { drained } from '../../util/drained.js';
import { KeepBackTail } from '../../util/keep-back-tail.js';

export interface BodySink {
  /** Called once, before the first byte is released: the message head must go out now. */
  begin(): Promise<void>;
  /** Sends released body bytes; resolves when the receiver can take more (backpressure). */
  write(chunk: Buffer): Promise<void>;
  /**
   * Optional batched form, used instead of begin() and write() when present: sends the head first
   * when `first`, then every chunk, then the end of the message when `last` (the body is complete and
   * may be delivered), all in one write, so one system call and full TLS records carry them.
   */
  writeBatch?(chunks: Buffer[], first: boolean, last: boolean): Promise<void>;
}

export interface BodyScanOptions {
  scanner: Scanner;
  holdLimit: number;
  keepBack: number;
  /** The Content-Encoding field value, if any. */
  contentEncoding?: string;
  /** Declared length (Content-Length), when known: above holdLimit the body streams from the start. */
  size?: number;
  /** Object name in the verdict's location (the URL's last path segment or 'body'). */
  name: string;
  spoolDir?: string;
  /** Bytes of a held body kept in memory before its spool moves to a temp file (default 1 MiB). */
  spoolMemory?: number;
}

export type BodyOutcome =
  /** Clean (or a scanner error that policy lets through): every byte has been released to the sink. */
  | { deliver: true; streamed: boolean; verdict: Verdict }
  /** Infected or a scanner error: `streamed` says whether part of the body already left. */
  | { deliver: false; streamed: boolean; verdict: Exclude<Verdict, { status: 'clean' }> };

/** One scan fed from a writable end; closes quietly if the scanner stops reading early. */
class ScanLane {
  readonly input: Writable;
  readonly verdict: Promise<Verdict>;
  /** The verdict once in, possibly before the lane's end (the engine decides early). */
  settled: Verdict | null = null;
  private closed = false;

  constructor(scanner: Scanner, decoders: Writable[], name: string, signal?: AbortSignal, size?: number) {
    const sink = new PassThrough({ highWaterMark: 256 * 1024 });
    this.verdict = scanner
      .scan(sink, {
        name,
        decideEarly: true,
        ...(signal ? { signal } : {}),
        ...(size !== undefined ? { size } : {}),
      })
      .catch(scanFailure)
      .then((v) => {
        this.settled = v;
        return v;
      })
      .finally(() => {
        this.closed = true;
        sink.destroy();
      });
    if (decoders.length === 0) {
      this.input = sink;
    } else {
      this.input = decoders[0]!;
      // A decoding error ends the lane with what was decoded so far: a client decoding the same
      // bytes stops at the same place. The raw lane still sees every byte.
      pipeline([...decoders, sink] as unknown as [Writable, Writable], () => {
        this.closed = true;
        if (!sink.writableEnded && !sink.destroyed) sink.end();
      });
    }
    this.input.on('error', () => {
      this.closed = true;
    });
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.closed || this.input.destroyed || this.input.writableEnded) return;
    if (!this.input.write(chunk)) await drained(this.input, this.verdict);
  }

  end(): void {
    if (!this.closed && !this.input.destroyed && !this.input.writableEnded) this.input.end();
  }

  destroy(): void {
    this.closed = true;
    this.input.destroy();
  }
}

/** Content codings in the order to undo them (outermost first); null when one is unknown. */
export function contentCodings(contentEncoding: string | undefined): string[] | null {
  if (!contentEncoding) return [];
  const codings = contentEncoding
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c && c !== 'identity')
    // Codings are listed in the order applied (RFC 9110 §8.4), so they are undone in reverse.
    .reverse();
  return codings.every((c) => DECODERS.has(c)) ? codings : null;
}

const DECODERS = new Map<string, () => Writable>([
  ['gzip', createGunzip],
  ['x-gzip', createGunzip],
  ['deflate', () => new DeflateAuto()],
  ['br', createBrotliDecompress],
]);

/**
 * The codings a decoded lane must undo, or none when the raw lane covers the content: gzip layers
 * only (the engine unpacks gzip, however deeply nested), or an unknown coding (nothing to decode
 * with; the raw bytes are still scanned).
 */
export function decodedLaneCodings(contentEncoding: string | undefined): string[] {
  const codings = contentCodings(contentEncoding);
  if (!codings || codings.every((c) => c === 'gzip' || c === 'x-gzip')) return [];
  return codings;
}

function decoders(codings: string[]): Writable[] {
  return codings.map((c) => DECODERS.get(c)!());
}

/**
 * "deflate" is meant to be zlib-wrapped (RFC 9110 §8.4.1.2) but some servers send raw deflate;
 * pick by the first byte as browsers do (a zlib header has CM=8 in the low nibble).
 */
class DeflateAuto extends Transform {
  private inner: Writable | null = null;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.inner) {
      const zlibWrapped = (chunk[0]! & 0x0f) === 8 && ((chunk[0]! << 8) | (chunk[1] ?? 0)) % 31 === 0;
      const inner = zlibWrapped ? createInflate() : createInflateRaw();
      inner.on('data', (d: Buffer) => this.push(d));
      inner.on('error', (e) => this.destroy(e));
      this.inner = inner;
    }
    if (this.inner.write(chunk)) cb();
    else this.inner.once('drain', () => cb());
  }
  override _flush(cb: (err?: Error | null) => void): void {
    if (!this.inner) {
      cb();
      return;
    }
    this.inner.once('end', () => cb());
    this.inner.end();
  }
}

export class ScannedBody {
  /** Scans fed while the body streams; null until it does (held bodies are scanned whole at the end). */
  private lanes: ScanLane[] | null = null;
  private abort: AbortController | null = null;
  private mode: 'hold' | 'stream';
  /** Holding: the body so far (the engine's Spool, so the scan takes its digest, not a second pass). */
  private held: Spool | null = null;
  /** Streaming: bytes not yet released. */
  private tail: KeepBackTail;
  private begun = false;
  private received = 0;
  private finished = false;
  /** Content codings to undo for the decoded lane; empty when the raw lane covers everything. */
  private readonly decode: string[];

  constructor(
    private readonly opts: BodyScanOptions,
    private readonly sink: BodySink,
  ) {
    this.decode = decodedLaneCodings(opts.contentEncoding);
    this.tail = new KeepBackTail(opts.keepBack);
    if (opts.size !== undefined && opts.size > opts.holdLimit) {
      this.mode = 'stream';
      this.startLanes();
    } else {
      this.mode = 'hold';
      this.held = new Spool({ memoryLimit: opts.spoolMemory ?? 1024 * 1024, dir: opts.spoolDir });
    }
  }

  /** Bytes received so far. */
  get size(): number {
    return this.received;
  }

  /** True once any byte of the body has been released to the sink. */
  get streamed(): boolean {
    return this.begun;
  }

  /**
   * Streaming, and a scan found the body infected before its end: nothing more is released, and the
   * caller should stop reading the body and call finish() to cut the transfer now, rather than relay
   * the rest of a large object first.
   */
  get decided(): boolean {
    return this.lanes?.some((l) => l.settled?.status === 'infected') ?? false;
  }

  async write(chunk: Buffer): Promise<void> {
    try {
      await this.accept(chunk);
    } catch (e) {
      // The receiver went away: stop the scans now rather than leave them waiting for an end.
      await this.abortScan();
      throw e;
    }
  }

  private startLanes(): ScanLane[] {
    this.abort = new AbortController();
    const { scanner, name, size } = this.opts;
    const lanes = [new ScanLane(scanner, [], name, this.abort.signal, size)];
    if (this.decode.length) lanes.push(new ScanLane(scanner, decoders(this.decode), name, this.abort.signal));
    this.lanes = lanes;
    return lanes;
  }

  private async feedLanes(chunk: Buffer): Promise<void> {
    const lanes = this.lanes!;
    if (lanes.length === 1) await lanes[0]!.write(chunk);
    else await Promise.all(lanes.map((l) => l.write(chunk)));
  }

  private async accept(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    this.received += chunk.length;
    if (this.mode === 'hold') {
      await this.held!.write(chunk);
      if (this.held!.size > this.opts.holdLimit) await this.switchToStream();
      return;
    }
    if (this.decided) return;
    await this.feedLanes(chunk);
    this.tail.push(chunk);
    await this.releaseBeyondKeepBack();
  }

  /** The held body outgrew holdLimit: scan what was held, release all but the keep-back tail, stream on. */
  private async switchToStream(): Promise<void> {
    const held = this.held!;
    this.held = null;
    this.mode = 'stream';
    this.startLanes();
    try {
      const { source } = await held.finish();
      for await (const c of chunksOf(source)) {
        if (this.decided) break;
        await this.feedLanes(c);
        this.tail.push(c);
        await this.releaseBeyondKeepBack();
      }
    } finally {
      await held.dispose();
    }
  }

  /** Sends body bytes (the message head first when none has gone yet); `last`: the body is done and clean. */
  private async release(chunks: Buffer[], last = false): Promise<void> {
    const first = !this.begun;
    this.begun = true;
    if (this.sink.writeBatch) return this.sink.writeBatch(chunks, first, last);
    if (first) await this.sink.begin();
    for (const c of chunks) await this.sink.write(c);
  }

  private async releaseBeyondKeepBack(): Promise<void> {
    const out = this.tail.beyondKeepBack();
    if (out.length) await this.release(out);
  }

  /**
   * The body is complete: waits for the verdict and, when it allows delivery, releases what was
   * held (with a batching sink, the end of the message in the same write). `onErrorAllow` is the
   * engine.onError policy (DESIGN 2: fail closed by default).
   */
  async finish(onErrorAllow = false): Promise<BodyOutcome> {
    this.finished = true;
    try {
      const verdict = this.lanes ? await this.streamVerdict(this.lanes) : await this.heldVerdict(this.held!);
      const deliver = verdict.status === 'clean' || (verdict.status === 'error' && onErrorAllow);
      if (!deliver)
        return {
          deliver: false,
          streamed: this.begun,
          verdict: verdict as Exclude<Verdict, { status: 'clean' }>,
        };
      if (this.held) {
        const { source } = await this.held.finish();
        if (source instanceof BufferSource) await this.release(source.size ? [source.buffer] : [], true);
        else {
          for await (const c of chunksOf(source)) await this.release([c]);
          await this.release([], true);
        }
      } else {
        await this.release(this.tail.takeAll(), true);
      }
      return { deliver: true, streamed: this.begun, verdict };
    } finally {
      await this.dispose();
    }
  }

  private async streamVerdict(lanes: ScanLane[]): Promise<Verdict> {
    for (const l of lanes) l.end();
    return combine(await Promise.all(lanes.map((l) => l.verdict)));
  }

  /**
   * A held body is scanned whole, once complete: from memory as a Buffer, or by path from its temp
   * file, with the SHA-256 its Spool computed as the bytes arrived, so the engine neither copies it
   * through a stream, nor writes it to disk a second time, nor reads it back to hash it.
   */
  private async heldVerdict(held: Spool): Promise<Verdict> {
    const { scanner, name } = this.opts;
    const { source } = await held.finish();
    const scans: Promise<Verdict>[] = [
      scanner.scan(held.scanInput(), { name, size: source.size }).catch(scanFailure),
    ];
    if (this.decode.length) {
      const lane = new ScanLane(scanner, decoders(this.decode), name);
      scans.push(lane.verdict);
      for await (const c of chunksOf(source)) await lane.write(c);
      lane.end();
    }
    return combine(await Promise.all(scans));
  }

  /** Stops the scans and drops held bytes (the connection carrying the body failed). */
  async abortScan(): Promise<void> {
    this.abort?.abort();
    const lanes = this.lanes ?? [];
    for (const l of lanes) l.destroy();
    await Promise.allSettled(lanes.map((l) => l.verdict));
    await this.dispose();
  }

  private async dispose(): Promise<void> {
    const held = this.held;
    this.held = null;
    this.tail.takeAll();
    await held?.dispose();
  }

  get isFinished(): boolean {
    return this.finished;
  }
}

/** Size of the pieces a held body is read back in. */
const READ_CHUNK = 256 * 1024;

/** A finished Spool's bytes in order: the one Buffer when in memory, else pieces of its file. */
function chunksOf(source: ObjectSource): AsyncIterable<Buffer> | Buffer[] {
  if (source instanceof BufferSource) return source.size ? [source.buffer] : [];
  return source.stream(0, source.size, READ_CHUNK);
}

/** Infected wins over error, error over clean. */
function combine(verdicts: Verdict[]): Verdict {
  return (
    verdicts.find((v) => v.status === 'infected') ??
    verdicts.find((v) => v.status === 'error') ?? { status: 'clean' }
  );
}
