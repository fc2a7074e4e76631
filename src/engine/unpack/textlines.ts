/**
 * Line splitting for the text formats (mail, uuencode): one streaming pass that hands out each line's
 * first bytes (for inspection) with its absolute offsets, so the bodies can later be streamed back from
 * the random-access source without ever being held. A line longer than `inspect` is only skipped.
 */
import type { ObjectSource } from '../source.js';
import { checkAbort } from './limits.js';
import type { UnpackContext } from './types.js';

export interface Line {
  /** The line's first bytes (latin1), without its CR LF / LF. */
  text: string;
  /** Offset of the line's first byte. */
  start: number;
  /** Offset just past its line break (the next line's start). */
  next: number;
  /** Length of its line break: 2 for CR LF, 1 for LF, 0 for a last line without one. */
  eol: number;
}

/** RFC 5322 §2.1.1 caps a line at 998 characters; longer lines are kept only this far. */
export const MAX_INSPECT = 998;

export async function* lines(
  source: ObjectSource,
  ctx: UnpackContext,
  inspect = MAX_INSPECT,
): AsyncGenerator<Line> {
  let pending: Buffer[] = [];
  let pendingLen = 0;
  let lineStart = 0;
  let pos = 0;
  let prevLast = -1; // last byte of the previous chunk, for a CR LF split across chunks
  for await (const chunk of source.stream()) {
    checkAbort(ctx);
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(10, from);
      const end = nl < 0 ? chunk.length : nl;
      if (nl >= 0 && pendingLen === 0) {
        // The whole line is in this chunk (the common case): no copy.
        const text = chunk.toString('latin1', from, Math.min(end, from + inspect));
        const next = pos + nl + 1;
        const before = nl > 0 ? chunk[nl - 1] : prevLast;
        const eol = before === 13 && next - lineStart >= 2 ? 2 : 1;
        yield { text: text.endsWith('\r') ? text.slice(0, -1) : text, start: lineStart, next, eol };
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
      const text = Buffer.concat(pending).toString('latin1');
      const next = pos + nl + 1;
      const before = nl > 0 ? chunk[nl - 1] : prevLast;
      const eol = before === 13 && next - lineStart >= 2 ? 2 : 1;
      yield { text: text.endsWith('\r') ? text.slice(0, -1) : text, start: lineStart, next, eol };
      lineStart = next;
      pending = [];
      pendingLen = 0;
      from = nl + 1;
    }
    pos += chunk.length;
    if (chunk.length) prevLast = chunk[chunk.length - 1]!;
  }
  if (lineStart < pos) {
    const text = Buffer.concat(pending).toString('latin1');
    yield { text: text.endsWith('\r') ? text.slice(0, -1) : text, start: lineStart, next: pos, eol: 0 };
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
