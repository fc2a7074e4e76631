/**
 * Scanning one message body on its way through (request upload or response download).
 *
 * Bodies up to `holdLimit` are held whole (in a Spool: memory, then a temp file) until the
 * verdict, so an infected object never leaves, not even in part. Larger bodies, or bodies whose
 * length was unknown and grew past the limit, stream: everything but the last `keepBack` bytes is
 * released as it arrives and the tail waits for the verdict (HAVP's KEEPBACKBUFFER). If the verdict
 * is infected after bytes were released, the caller cuts the transfer (c-icap's
 * "partiallyblocked"): the receiver has an incomplete object and no terminating chunk.
 *
 * The scanner reads the body while it arrives. With a Content-Encoding (gzip, deflate, br) the
 * decoded bytes are scanned in a second lane next to the raw bytes: the raw lane keeps a server that
 * lies about the encoding (raw malware labelled "br") from slipping through an undecodable lane,
 * while the decoded lane finds what only the decoded form shows. Forwarded bytes are always the
 * original ones.
 */
import type { Writable } from 'node:stream';
import { PassThrough, pipeline, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { Spool } from '../../engine/source.js';
import type { Scanner, Verdict } from '../../engine/types.js';

export interface BodySink {
  /** Called once, before the first byte is released: the message head must go out now. */
  begin(): Promise<void>;
  /** Sends released body bytes; resolves when the receiver can take more (backpressure). */
  write(chunk: Buffer): Promise<void>;
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
  /** Bytes of a held body kept in memory before its spool moves to a temp file. */
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
  private closed = false;

  constructor(scanner: Scanner, decoders: Writable[], name: string, signal: AbortSignal, size?: number) {
    const sink = new PassThrough({ highWaterMark: 256 * 1024 });
    this.verdict = scanner
      .scan(sink, { name, signal, size })
      .catch(
        (e: Error): Verdict => ({ status: 'error', reason: e.message, code: (e as { code?: string }).code }),
      )
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
    if (!this.input.write(chunk)) await drained(this.input, () => this.closed);
  }

  end(): void {
    if (!this.closed && !this.input.destroyed && !this.input.writableEnded) this.input.end();
  }

  destroy(): void {
    this.closed = true;
    this.input.destroy();
  }
}

/** Resolves on 'drain', or when the stream closes/errs, or when `gone()` turns true. */
function drained(stream: Writable, gone: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearInterval(poll);
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    // The scanner may finish (and stop reading) without this stream ever draining or closing.
    const poll = setInterval(() => {
      if (gone()) done();
    }, 50);
    stream.once('drain', done);
    stream.once('close', done);
    stream.once('error', done);
  });
}

/** zlib decoders for a Content-Encoding value, outermost coding first; null when one is unknown. */
export function decodersFor(contentEncoding: string | undefined): Writable[] | null {
  if (!contentEncoding) return [];
  const codings = contentEncoding
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c && c !== 'identity');
  const out: Writable[] = [];
  // Codings are listed in the order applied (RFC 9110 §8.4), so they are undone in reverse.
  for (const c of codings.reverse()) {
    if (c === 'gzip' || c === 'x-gzip') out.push(createGunzip());
    else if (c === 'deflate') out.push(new DeflateAuto());
    else if (c === 'br') out.push(createBrotliDecompress());
    else return null;
  }
  return out;
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
  private readonly lanes: ScanLane[] = [];
  private readonly abort = new AbortController();
  private mode: 'hold' | 'stream';
  private spool: Spool | null = null;
  /** Streaming: bytes not yet released, oldest first, at most keepBack plus one chunk. */
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private begun = false;
  private received = 0;
  private finished = false;

  constructor(
    private readonly opts: BodyScanOptions,
    private readonly sink: BodySink,
  ) {
    const decoders = decodersFor(opts.contentEncoding);
    const encoded = decoders !== null && decoders.length > 0;
    this.lanes.push(new ScanLane(opts.scanner, [], opts.name, this.abort.signal, opts.size));
    if (encoded) this.lanes.push(new ScanLane(opts.scanner, decoders, opts.name, this.abort.signal));
    this.mode = opts.size !== undefined && opts.size > opts.holdLimit ? 'stream' : 'hold';
    if (this.mode === 'hold')
      this.spool = new Spool({ dir: opts.spoolDir, memoryLimit: opts.spoolMemory ?? 1024 * 1024 });
  }

  /** Bytes received so far. */
  get size(): number {
    return this.received;
  }

  /** True once any byte of the body has been released to the sink. */
  get streamed(): boolean {
    return this.begun;
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

  private async accept(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    this.received += chunk.length;
    await Promise.all(this.lanes.map((l) => l.write(chunk)));
    if (this.mode === 'hold') {
      await this.spool!.write(chunk);
      if (this.spool!.size > this.opts.holdLimit) await this.switchToStream();
      return;
    }
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    await this.releaseBeyondKeepBack();
  }

  /** The held body outgrew holdLimit: release all but the keep-back tail and continue streaming. */
  private async switchToStream(): Promise<void> {
    const spool = this.spool!;
    this.spool = null;
    this.mode = 'stream';
    try {
      const { source } = await spool.finish();
      const cut = Math.max(0, source.size - this.opts.keepBack);
      await this.begin();
      for await (const c of source.stream(0, cut)) await this.sink.write(c);
      for await (const c of source.stream(cut, source.size)) {
        this.tail.push(c);
        this.tailBytes += c.length;
      }
    } finally {
      await spool.dispose();
    }
  }

  private async begin(): Promise<void> {
    if (this.begun) return;
    this.begun = true;
    await this.sink.begin();
  }

  private async releaseBeyondKeepBack(): Promise<void> {
    while (this.tail.length && this.tailBytes - this.tail[0]!.length >= this.opts.keepBack) {
      const c = this.tail.shift()!;
      this.tailBytes -= c.length;
      await this.begin();
      await this.sink.write(c);
    }
    // One big chunk may straddle the boundary: release its front part.
    const over = this.tailBytes - this.opts.keepBack;
    if (over > 0 && this.tail.length) {
      const first = this.tail[0]!;
      this.tail[0] = first.subarray(over);
      this.tailBytes -= over;
      await this.begin();
      await this.sink.write(first.subarray(0, over));
    }
  }

  /**
   * The body is complete: waits for the verdict and, when it allows delivery, releases what was
   * held. `onErrorAllow` is the engine.onError policy (DESIGN 2: fail closed by default).
   */
  async finish(onErrorAllow = false): Promise<BodyOutcome> {
    this.finished = true;
    for (const l of this.lanes) l.end();
    const verdicts = await Promise.all(this.lanes.map((l) => l.verdict));
    const verdict = combine(verdicts);
    try {
      const deliver = verdict.status === 'clean' || (verdict.status === 'error' && onErrorAllow);
      if (!deliver)
        return {
          deliver: false,
          streamed: this.begun,
          verdict: verdict as Exclude<Verdict, { status: 'clean' }>,
        };
      if (this.spool) {
        const { source } = await this.spool.finish();
        await this.begin();
        for await (const c of source.stream()) await this.sink.write(c);
      } else {
        await this.begin();
        for (const c of this.tail) await this.sink.write(c);
        this.tail = [];
        this.tailBytes = 0;
      }
      return { deliver: true, streamed: this.begun, verdict };
    } finally {
      await this.dispose();
    }
  }

  /** Stops the scans and drops held bytes (the connection carrying the body failed). */
  async abortScan(): Promise<void> {
    this.abort.abort();
    for (const l of this.lanes) l.destroy();
    await Promise.allSettled(this.lanes.map((l) => l.verdict));
    await this.dispose();
  }

  private async dispose(): Promise<void> {
    const spool = this.spool;
    this.spool = null;
    this.tail = [];
    await spool?.dispose();
  }

  get isFinished(): boolean {
    return this.finished;
  }
}

/** Infected wins over error, error over clean. */
function combine(verdicts: Verdict[]): Verdict {
  return (
    verdicts.find((v) => v.status === 'infected') ??
    verdicts.find((v) => v.status === 'error') ?? { status: 'clean' }
  );
}
