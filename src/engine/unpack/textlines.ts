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
  /** Length of the line break just before it (0 for the first line), also when that line was skipped. */
  readonly before: number;
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
    readonly before: number,
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
    readonly before: number,
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

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);
const withoutCr = (t: string) => (t.endsWith('\r') ? t.slice(0, -1) : t);

/**
 * Splits a source's chunks into lines, handed out one at a time so the consumer can say, line by
 * line, which lines it still needs: `next(only)` passes over whole lines that do not start with the
 * byte `only`, found by a native search for that byte instead of a step per line (a MIME body
 * between boundaries is ~1,300 base64 lines per 100 KB, none of which the indexer reads). A skipped
 * line may still be handed out (one that straddles chunks); a line starting with `only` never is missed.
 */
export class LineSplitter {
  private chunk: Buffer = EMPTY;
  /** Next unread byte of `chunk`. */
  private from = 0;
  /** Offset of `chunk`'s first byte in the object. */
  private pos = 0;
  /** Last byte of the previous chunk, for a CR LF split across chunks. */
  private prevLast = -1;
  /** Offset of the line in progress. */
  private lineStart = 0;
  /** Line-break length of the last line passed (handed out or skipped). */
  private lastEol = 0;
  /** The inspected start of a line that straddles chunks. */
  private pending: Buffer[] = [];
  private pendingLen = 0;

  constructor(private readonly inspect = MAX_INSPECT) {}

  /** The next chunk of the source; the previous one must have been read to its end (next() gave null). */
  push(chunk: Buffer): void {
    this.pos += this.chunk.length;
    if (this.chunk.length) this.prevLast = this.chunk[this.chunk.length - 1]!;
    this.chunk = chunk;
    this.from = 0;
  }

  /** The next line ending in the current chunk, or null when the chunk is used up. */
  next(only = -1): Line | null {
    const chunk = this.chunk;
    for (;;) {
      const from = this.from;
      if (only >= 0 && this.pendingLen === 0 && from < chunk.length && chunk[from] !== only) {
        // Past every line up to the next one starting with `only`, or to the chunk's last line end.
        // Searched as `only` with a look at the byte before it: a search for the pair LF + `only`
        // stops at every LF, while "-" (the indexer's byte) never occurs in a base64 body.
        let at = chunk.indexOf(only, from + 1);
        while (at >= 0 && chunk[at - 1] !== LF) at = chunk.indexOf(only, at + 1);
        const lf = at >= 0 ? at - 1 : chunk.lastIndexOf(LF);
        if (lf >= from) {
          // The line ending at lf began at or after `from`: its CR, if any, is in this chunk.
          this.lastEol = lf > from && chunk[lf - 1] === CR ? 2 : 1;
          this.lineStart = this.pos + lf + 1;
          this.from = lf + 1;
          continue;
        }
      }
      const nl = chunk.indexOf(LF, from);
      const end = nl < 0 ? chunk.length : nl;
      if (nl >= 0 && this.pendingLen === 0) {
        // The whole line is in this chunk (the common case): a view, no copy.
        let to = Math.min(end, from + this.inspect);
        if (to > from && chunk[to - 1] === CR) to--;
        const start = this.lineStart;
        const before = this.lastEol;
        const eol = this.ended(nl);
        return new ChunkLine(chunk, from, to, start, this.lineStart, eol, before);
      }
      if (this.pendingLen < this.inspect) {
        const piece = chunk.subarray(from, Math.min(end, from + (this.inspect - this.pendingLen)));
        this.pending.push(Buffer.from(piece));
        this.pendingLen += piece.length;
      }
      if (nl < 0) {
        this.from = chunk.length;
        return null;
      }
      const text = withoutCr(Buffer.concat(this.pending).toString('latin1'));
      this.pending = [];
      this.pendingLen = 0;
      const start = this.lineStart;
      const before = this.lastEol;
      const eol = this.ended(nl);
      return new JoinedLine(text, start, this.lineStart, eol, before);
    }
  }

  /** After the last chunk: the last line when the object does not end with a line break. */
  end(): Line | null {
    this.push(EMPTY);
    if (this.lineStart >= this.pos) return null;
    const text = withoutCr(Buffer.concat(this.pending).toString('latin1'));
    const line = new JoinedLine(text, this.lineStart, this.pos, 0, this.lastEol);
    this.lineStart = this.pos;
    return line;
  }

  /** Passes the line ending at `nl` of the current chunk (lineStart becomes the next line's); its eol. */
  private ended(nl: number): number {
    const next = this.pos + nl + 1;
    const before = nl > 0 ? this.chunk[nl - 1] : this.prevLast;
    const eol = before === CR && next - this.lineStart >= 2 ? 2 : 1;
    this.lastEol = eol;
    this.lineStart = next;
    this.from = nl + 1;
    return eol;
  }
}

/** The source's lines, one batch per chunk (a batch may be empty when a chunk holds no line end). */
export async function* lineBatches(
  source: ObjectSource,
  ctx: UnpackContext,
  inspect = MAX_INSPECT,
): AsyncGenerator<Line[]> {
  const split = new LineSplitter(inspect);
  for await (const chunk of source.stream()) {
    checkAbort(ctx);
    split.push(chunk);
    const batch: Line[] = [];
    for (let l = split.next(); l; l = split.next()) batch.push(l);
    yield batch;
  }
  const last = split.end();
  if (last) yield [last];
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
