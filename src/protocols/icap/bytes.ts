/**
 * The ICAP parser's input: bytes received and not yet parsed, read through offsets relative to the
 * first unread byte. Appending keeps the unread tail only, so memory is bounded by what the parser
 * is waiting on (one head, one chunk-size line), never by what it already handed out.
 */
export class ByteQueue {
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;

  append(data: Buffer): void {
    if (data.length === 0) return;
    this.buf = this.start >= this.buf.length ? data : Buffer.concat([this.buf.subarray(this.start), data]);
    this.start = 0;
  }

  get length(): number {
    return this.buf.length - this.start;
  }

  /** Offset of `needle` at or after `from`, or -1. */
  find(needle: Buffer, from = 0): number {
    const at = this.buf.indexOf(needle, this.start + from);
    return at < 0 ? -1 : at - this.start;
  }

  byteAt(offset: number): number | undefined {
    return this.buf[this.start + offset];
  }

  text(from: number, to: number): string {
    return this.buf.toString('latin1', this.start + from, this.start + to);
  }

  /** A view of [from, to) without consuming it. */
  view(from: number, to: number): Buffer {
    return this.buf.subarray(this.start + from, this.start + to);
  }

  /** Consumes and returns up to `n` bytes (a view, no copy). */
  take(n: number): Buffer {
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += out.length;
    return out;
  }

  skip(n: number): void {
    this.start = Math.min(this.buf.length, this.start + n);
  }
}
