/**
 * Per-entry limits shared by every archive unpacker: output size (maxFileSize), zip-bomb ratio
 * (maxCompressionRatio, only once output passes 1 MiB so tiny well-compressed files are not flagged),
 * abort checks between chunks, and re-chunking to at most 64 KiB so the scanner never holds more.
 */
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { UnpackContext } from './types.js';

export const MAX_CHUNK = 64 * 1024;
const RATIO_FLOOR = 1024 * 1024;

export function checkAbort(ctx: UnpackContext): void {
  if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'unpacking aborted');
}

/**
 * Passes decompressed chunks through, enforcing the limits. `compressed` says how many input bytes
 * the output came from (a number when known up front, a function when counted while streaming).
 */
export async function* limitOutput(
  format: string,
  chunks: AsyncIterable<Buffer>,
  ctx: UnpackContext,
  compressed: number | (() => number),
): AsyncGenerator<Buffer> {
  let produced = 0;
  for await (const chunk of chunks) {
    checkAbort(ctx);
    for (let off = 0; off < chunk.length; off += MAX_CHUNK) {
      let piece = chunk.subarray(off, Math.min(chunk.length, off + MAX_CHUNK));
      if (produced + piece.length > ctx.maxFileSize) {
        piece = piece.subarray(0, Math.max(0, ctx.maxFileSize - produced));
        if (piece.length > 0) yield piece;
        throw new UnpackLimitError('MaxFileSize', `${format}: entry larger than ${ctx.maxFileSize} bytes`);
      }
      produced += piece.length;
      const inBytes = Math.max(1, typeof compressed === 'number' ? compressed : compressed());
      if (produced > RATIO_FLOOR && produced / inBytes > ctx.maxCompressionRatio) {
        throw new UnpackLimitError(
          'MaxCompressionRatio',
          `${format}: compression ratio above ${ctx.maxCompressionRatio} (${produced} bytes from ${inBytes})`,
        );
      }
      yield piece;
    }
  }
}

/** Counts the bytes an input stream has delivered (compressed size for streaming ratio checks). */
export class Counter {
  bytes = 0;
  async *count(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const c of input) {
      this.bytes += c.length;
      yield c;
    }
  }
}

/** Wraps any non-limit failure of a decoder as an UnpackError of this format. */
export function asUnpackError(format: string, code: string, e: unknown): Error {
  if (e instanceof UnpackError || e instanceof UnpackLimitError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new UnpackError(format, code, msg, { cause: e });
}

/** Counts yielded entries and throws MaxFiles on the one past the limit. */
export class EntryCounter {
  private n = 0;
  constructor(
    private readonly format: string,
    private readonly ctx: UnpackContext,
  ) {}
  next(): void {
    checkAbort(this.ctx);
    this.n++;
    if (this.n > this.ctx.maxFiles) {
      throw new UnpackLimitError('MaxFiles', `${this.format}: more than ${this.ctx.maxFiles} entries`);
    }
  }
}
