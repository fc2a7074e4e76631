/**
 * Sans-IO reader for one direction of an SMTP connection: bytes in, events out.
 *
 * Line mode splits CRLF-terminated lines (commands from a client, reply lines from a server) with a
 * length limit (RFC 5321 §4.5.3.1.4: 512 octets for a command line, raised by extensions — AUTH
 * allows 12288, RFC 4954 §4). An overlong line is reported once, as soon as it passes the limit, and
 * the rest of it is then skipped up to its LF, so a 10 MB "line" costs no memory. A line ended by a
 * bare LF is reported as such (RFC 5321 §2.3.8: a bare LF is not a line ending; the session answers
 * it with an error instead of guessing).
 *
 * Chunk mode (after a BDAT command, RFC 3030) hands out exactly the announced number of octets.
 *
 * Data mode (after DATA's 354) hands every byte to a DotUnstuffer and emits the message content
 * until the end-of-data line, then switches back to line mode with whatever followed it still
 * buffered (RFC 2920 pipelining).
 */
import { DotUnstuffer } from './dot.js';

export type ReaderEvent =
  /** One line without its terminator. `bareLf` when it ended in LF without CR. */
  | { type: 'line'; line: Buffer; bareLf: boolean }
  /** A line passed `maxLine` octets (terminator included); the rest of it is being discarded. */
  | { type: 'overlong'; length: number }
  /** Unstuffed message content with canonical CRLF line endings. */
  | { type: 'data'; chunk: Buffer }
  /** The end-of-data line `.` was read; the reader is back in line mode. */
  | { type: 'end' };

const LF = 0x0a;
const CR = 0x0d;

export class SmtpReader {
  /** Longest line accepted, terminator included. */
  maxLine: number;
  private buf: Buffer = Buffer.alloc(0);
  private skipping = false;
  private unstuffer: DotUnstuffer | null = null;
  private pendingEnd = false;
  /** Octets of a BDAT chunk still to hand out; -1 outside one. */
  private chunkLeft = -1;

  constructor(maxLine = 2048) {
    this.maxLine = maxLine;
  }

  /** Bytes received and not yet turned into events. */
  get buffered(): number {
    return this.buf.length;
  }

  get inData(): boolean {
    return this.unstuffer !== null || this.pendingEnd || this.chunkLeft >= 0;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** Switches to data mode: what follows is message content up to `CRLF.CRLF`. */
  startData(): DotUnstuffer {
    this.unstuffer = new DotUnstuffer();
    return this.unstuffer;
  }

  /**
   * BDAT (RFC 3030 §2): the next `size` octets are message content exactly as sent — no line
   * structure, no dot-unstuffing — handed out as data events, then an end event; whatever follows
   * them is read in line mode again.
   */
  startChunk(size: number): void {
    this.chunkLeft = size;
  }

  /**
   * Drops every buffered byte and any line in progress; returns how many bytes were dropped. Used
   * after STARTTLS, where anything the peer sent before the handshake must not be acted on
   * (CVE-2011-0411: plaintext injected ahead of the TLS handshake).
   */
  discard(): number {
    const n = this.buf.length;
    this.buf = Buffer.alloc(0);
    this.skipping = false;
    return n;
  }

  /** The next event, or null when more bytes are needed. */
  next(): ReaderEvent | null {
    if (this.pendingEnd) {
      this.pendingEnd = false;
      return { type: 'end' };
    }
    if (this.chunkLeft >= 0) return this.nextChunk();
    if (this.unstuffer) return this.nextData(this.unstuffer);
    return this.nextLine();
  }

  private nextChunk(): ReaderEvent | null {
    if (this.chunkLeft === 0) {
      this.chunkLeft = -1;
      return { type: 'end' };
    }
    if (this.buf.length === 0) return null;
    const take = Math.min(this.buf.length, this.chunkLeft);
    const chunk = this.buf.subarray(0, take);
    this.buf = this.buf.subarray(take);
    this.chunkLeft -= take;
    return { type: 'data', chunk };
  }

  private nextData(u: DotUnstuffer): ReaderEvent | null {
    if (this.buf.length === 0) return null;
    const input = this.buf;
    this.buf = Buffer.alloc(0);
    const { out, rest } = u.write(input);
    if (rest !== null) {
      this.unstuffer = null;
      this.buf = rest;
      if (out.length === 0) return { type: 'end' };
      this.pendingEnd = true;
    }
    if (out.length === 0) return this.next();
    return { type: 'data', chunk: out };
  }

  private nextLine(): ReaderEvent | null {
    for (;;) {
      if (this.buf.length === 0) return null;
      const lf = this.buf.indexOf(LF);
      if (this.skipping) {
        if (lf < 0) {
          this.buf = Buffer.alloc(0);
          return null;
        }
        this.buf = this.buf.subarray(lf + 1);
        this.skipping = false;
        continue;
      }
      if (lf < 0) {
        if (this.buf.length >= this.maxLine) {
          // Report now rather than at the line's end: the peer learns at once, and nothing of the
          // line is kept while the rest of it trickles in.
          const length = this.buf.length;
          this.skipping = true;
          this.buf = Buffer.alloc(0);
          return { type: 'overlong', length };
        }
        return null;
      }
      const length = lf + 1;
      if (length > this.maxLine) {
        this.buf = this.buf.subarray(length);
        return { type: 'overlong', length };
      }
      const bareLf = lf === 0 || this.buf[lf - 1] !== CR;
      const line = Buffer.from(this.buf.subarray(0, bareLf ? lf : lf - 1));
      this.buf = this.buf.subarray(length);
      return { type: 'line', line, bareLf };
    }
  }
}
