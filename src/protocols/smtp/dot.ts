/**
 * DATA transparency (RFC 5321 §4.5.2), both directions, as streaming byte transforms.
 *
 * Unstuffing (client → us): a line starting with "." loses that dot; the line "." alone ends the
 * data. Only `CRLF . CRLF` ends it (§4.1.1.4). Every other line break — a bare LF or a bare CR — is
 * rewritten to CRLF in the content we keep, scan and forward. That is what defeats "SMTP smuggling"
 * (SEC Consult, 2023): a `LF . LF` or `CR . CR LF` that we read as content but a laxer server behind
 * us would read as end-of-data followed by a second, smuggled message. After normalisation the only
 * line breaks left are CRLF, and every "." at a line start is stuffed again on the way out, so the
 * server can only see the end of data where we put it. RFC 5321 §2.3.8 forbids bare CR and LF in
 * mail content, so conforming mail passes unchanged.
 *
 * Stuffing (us → server): a "." is added at the start of every line that begins with one, and the
 * data is closed with `.CRLF` (preceded by CRLF when the content does not already end with one).
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from('\r\n');

enum U {
  /** At the start of a line. */
  LineStart,
  /** Read "." at the start of a line. */
  Dot,
  /** Read ".CR" at the start of a line. */
  DotCr,
  /** Inside a line. */
  Mid,
  /** Read CR inside a line (or at its start). */
  Cr,
  /** End of data reached. */
  Done,
}

export interface UnstuffResult {
  /** Content decoded from this input. */
  out: Buffer;
  /** Bytes after the end-of-data line (null while the end has not been seen). */
  rest: Buffer | null;
}

export class DotUnstuffer {
  private state = U.LineStart;
  /** The current line began after a bare CR or LF: its "." alone is content, not the end (§4.1.1.4). */
  private bareStart = false;
  /** Line breaks that were not CRLF and were rewritten to it. */
  normalized = 0;
  /** Content bytes produced so far. */
  size = 0;

  get done(): boolean {
    return this.state === U.Done;
  }

  write(input: Buffer): UnstuffResult {
    if (this.state === U.Done) return { out: Buffer.alloc(0), rest: input };
    const parts: Buffer[] = [];
    // Runs of ordinary bytes are copied as slices, not byte by byte.
    let runStart = -1;
    const flush = (end: number) => {
      if (runStart >= 0 && end > runStart) parts.push(input.subarray(runStart, end));
      runStart = -1;
    };
    const emit = (b: Buffer) => parts.push(b);
    let i = 0;
    let rest: Buffer | null = null;
    while (i < input.length) {
      const c = input[i]!;
      switch (this.state) {
        case U.Mid:
          if (c === CR) {
            flush(i);
            this.state = U.Cr;
          } else if (c === LF) {
            flush(i);
            emit(CRLF);
            this.normalized++;
            this.state = U.LineStart;
            this.bareStart = true;
          } else if (runStart < 0) runStart = i;
          i++;
          break;
        case U.LineStart:
          if (c === DOT) this.state = U.Dot;
          else if (c === CR) this.state = U.Cr;
          else if (c === LF) {
            emit(CRLF);
            this.normalized++;
            this.bareStart = true;
          } else {
            runStart = i;
            this.state = U.Mid;
          }
          i++;
          break;
        case U.Dot:
          if (c === CR) {
            this.state = U.DotCr;
            i++;
          } else if (c === LF) {
            // ". LF": not the end (only CRLF.CRLF is); a content line holding one dot.
            emit(Buffer.from('.\r\n'));
            this.normalized++;
            this.state = U.LineStart;
            this.bareStart = true;
            i++;
          } else if (c === DOT) {
            // ".." → "." (the stuffed dot is dropped, the second kept).
            runStart = i;
            this.state = U.Mid;
            i++;
          } else {
            // ".x": "the first character is deleted" (§4.5.2), stuffed or not.
            runStart = i;
            this.state = U.Mid;
            i++;
          }
          break;
        case U.DotCr:
          if (c === LF && !this.bareStart) {
            this.state = U.Done;
            rest = input.subarray(i + 1);
            i = input.length;
          } else if (c === LF) {
            // "LF . CRLF": the end only for lax servers, so for us a content line holding one dot.
            emit(Buffer.from('.\r\n'));
            this.state = U.LineStart;
            this.bareStart = false;
            i++;
          } else {
            // ". CR x": a dot line ended by a bare CR; x starts the next line.
            emit(Buffer.from('.\r\n'));
            this.normalized++;
            this.state = U.LineStart;
            this.bareStart = true;
          }
          break;
        case U.Cr:
          if (c === LF) {
            emit(CRLF);
            this.state = U.LineStart;
            this.bareStart = false;
            i++;
          } else {
            // Bare CR: a line break for lax servers, so it becomes CRLF; c starts the next line.
            emit(CRLF);
            this.normalized++;
            this.state = U.LineStart;
            this.bareStart = true;
          }
          break;
        case U.Done:
          i = input.length;
          break;
      }
    }
    if (this.state === U.Mid) flush(input.length);
    const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.size += out.length;
    return { out, rest };
  }
}

/** Content → wire: stuffs leading dots; `end()` gives the closing bytes. */
export class DotStuffer {
  private atLineStart = true;
  private lastByte = -1;
  private wrote = false;

  write(input: Buffer): Buffer {
    if (input.length === 0) return input;
    this.wrote = true;
    const parts: Buffer[] = [];
    let start = 0;
    if (this.atLineStart && input[0] === DOT) parts.push(Buffer.from('.'));
    let lf = input.indexOf(LF);
    while (lf >= 0 && lf + 1 < input.length) {
      if (input[lf + 1] === DOT) {
        parts.push(input.subarray(start, lf + 1), Buffer.from('.'));
        start = lf + 1;
      }
      lf = input.indexOf(LF, lf + 1);
    }
    parts.push(input.subarray(start));
    this.lastByte = input[input.length - 1]!;
    this.atLineStart = this.lastByte === LF;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** The end-of-data sequence, with the CRLF that ends an unterminated last line when needed. */
  end(): Buffer {
    if (!this.wrote || this.lastByte === LF) return Buffer.from('.\r\n');
    return Buffer.from('\r\n.\r\n');
  }
}

/** Whole-buffer helpers (tests, small messages). */
export function dotStuff(content: Buffer): Buffer {
  const s = new DotStuffer();
  return Buffer.concat([s.write(content), s.end()]);
}

export function dotUnstuff(wire: Buffer): { content: Buffer; rest: Buffer | null } {
  const u = new DotUnstuffer();
  const { out, rest } = u.write(wire);
  return { content: out, rest };
}
