/**
 * Line splitting for the text formats (mail, uuencode): one streaming pass that hands out each line's
 * first bytes (for inspection) with its absolute offsets, so the bodies can later be streamed back from
 * the random-access source without ever being held. A line longer than `inspect` is only skipped.
 *
 * Lines come in batches, one array per source chunk, and a line's text is only decoded to a string
 * when a consumer reads it: a 100 KB mail is ~1,300 lines, nearly all base64 body lines that the MIME
 * indexer dismisses on their first byte, so one async step and one string per line was most of its cost.
 */
import type { ObjectSource } from '../source.js';
import { checkAbort } from './limits.js';
import type { UnpackContext } from './types.js';

export interface Line {
  /** The line's first bytes (latin1), without its CR LF / LF. */
  readonly text: string;
  /** Length of `text`, known without decoding it. */
  readonly length: number;
  /** The first byte of `text`, or -1 when the line is empty: lets callers dismiss a line without `text`. */
  readonly first: number;
  /** Offset of the line's first byte. */
  readonly start: number;
  /** Offset just past its line break (the next line's start). */
  readonly next: number;
  /** Length of its line break: 2 for CR LF, 1 for LF, 0 for a last line without one. */
  readonly eol: number;
}

/** A line lying whole in one chunk: a view of the chunk, decoded on first use of `text`. */
class ChunkLine implements Line {
  private decoded: string | undefined;
  constructor(
    private readonly buf: Buffer,
    private readonly from: number,
    private readonly to: number,
    readonly start: number,
    readonly next: number,
    readonly eol: number,
  ) {}
  get length(): number {
    return this.to - this.from;
  }
  get first(): number {
    return this.to > this.from ? this.buf[this.from]! : -1;
  }
  get text(): string {
    this.decoded ??= this.buf.toString('latin1', this.from, this.to);
    return this.decoded;
  }
}

/** A line that straddled chunks: its inspected bytes were copied and decoded already. */
class JoinedLine implements Line {
  constructor(
    readonly text: string,
    readonly start: number,
    readonly next: number,
    readonly eol: number,
  ) {}
  get length(): number {
    return this.text.length;
  }
  get first(): number {
    return this.text.length ? this.text.charCodeAt(0) : -1;
  }
}

/** RFC 5322 §2.1.1 caps a line at 998 characters; longer lines are kept only this far. */
export const MAX_INSPECT = 998;

const withoutCr = (t: string) => (t.endsWith('\r') ? t.slice(0, -1) : t);

/** The source's lines, one batch per chunk (a batch may be empty when a chunk holds no line end). */
export async function* lineBatches(
  source: ObjectSource,
  ctx: UnpackContext,
  inspect = MAX_INSPECT,
): AsyncGenerator<Line[]> {
  let pending: Buffer[] = [];
  let pendingLen = 0;
  let lineStart = 0;
  let pos = 0;
  let prevLast = -1; // last byte of the previous chunk, for a CR LF split across chunks
  for await (const chunk of source.stream()) {
    checkAbort(ctx);
    const batch: Line[] = [];
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(10, from);
      const end = nl < 0 ? chunk.length : nl;
      if (nl >= 0 && pendingLen === 0) {
        // The whole line is in this chunk (the common case): a view, no copy.
        let to = Math.min(end, from + inspect);
        if (to > from && chunk[to - 1] === 13) to--;
        const next = pos + nl + 1;
        const before = nl > 0 ? chunk[nl - 1] : prevLast;
        const eol = before === 13 && next - lineStart >= 2 ? 2 : 1;
        batch.push(new ChunkLine(chunk, from, to, lineStart, next, eol));
        lineStart = next;
        from = nl + 1;
        continue;
      }
      if (pendingLen < inspect) {
        const piece = chunk.subarray(from, Math.min(end, from + (inspect - pendingLen)));
        pending.push(Buffer.from(piece));
        pendingLen += piece.length;
      }
      if (nl < 0) break;
      const text = withoutCr(Buffer.concat(pending).toString('latin1'));
      const next = pos + nl + 1;
      const before = nl > 0 ? chunk[nl - 1] : prevLast;
      const eol = before === 13 && next - lineStart >= 2 ? 2 : 1;
      batch.push(new JoinedLine(text, lineStart, next, eol));
      lineStart = next;
      pending = [];
      pendingLen = 0;
      from = nl + 1;
    }
    pos += chunk.length;
    if (chunk.length) prevLast = chunk[chunk.length - 1]!;
    yield batch;
  }
  if (lineStart < pos) {
    const text = withoutCr(Buffer.concat(pending).toString('latin1'));
    yield [new JoinedLine(text, lineStart, pos, 0)];
  }
}

/** `begin 644 name` (uuencode) or `begin-base64 644 name` (uuencode -m), POSIX uuencode(1). */
export const UU_BEGIN = /^begin(-base64)? +[0-7]{1,4} +(.+)$/;

/** Tracks uuencoded blocks in a run of text lines. */
export class UuScanner {
  private open: { name: string; start: number; base64: boolean } | null = null;

  /** Feeds one line; returns a finished block when this line ends one. */
  line(l: Line): UuBlock | null {
    if (!this.open) {
      if (l.first !== 0x62) return null; // every `begin` line starts with "b"
      const m = UU_BEGIN.exec(l.text);
      if (m) this.open = { name: m[2]!.trim(), start: l.next, base64: m[1] !== undefined };
      return null;
    }
    const t = l.text.trimEnd();
    if (this.open.base64 ? t === '====' : t === 'end') {
      const b = { ...this.open, end: l.start };
      this.open = null;
      return b;
    }
    return null;
  }

  /** Writers often omit the final `end` line; the block then runs to the end of its text. */
  close(end: number): UuBlock | null {
    const b = this.open ? { ...this.open, end } : null;
    this.open = null;
    return b && b.end > b.start ? b : null;
  }
}

export interface UuBlock {
  name: string;
  start: number;
  end: number;
  base64: boolean;
}
