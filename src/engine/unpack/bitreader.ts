/**
 * Input plumbing for the hand-written decoders (deflate64, bzip2, SZDD). A decoder is a synchronous
 * generator that yields output Buffers, or NEED_INPUT when its InputBuffer runs low; `runDecoder`
 * refills the buffer from the async source in between. Keeping the decoder synchronous keeps its
 * inner loops fast, and the generator keeps its state across refills without a hand-made state machine.
 */
export const NEED_INPUT = Symbol('need-input');
export type DecoderStep = Buffer | typeof NEED_INPUT;

export class InputBuffer {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  eof = false;
  /** Total bytes consumed before `buf` (for position reporting). */
  base = 0;

  get available(): number {
    return this.buf.length - this.pos;
  }
  push(chunk: Buffer): void {
    const rest = this.buf.subarray(this.pos);
    this.base += this.pos;
    this.buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    this.pos = 0;
  }
}

/** LSB-first bit reader (deflate). Bytes past the end read as 0 and are counted in `overrun`. */
export class LsbBits {
  bitbuf = 0;
  bitcnt = 0;
  overrun = 0;
  constructor(readonly input: InputBuffer) {}
  need(n: number): void {
    const inp = this.input;
    while (this.bitcnt < n) {
      let b = 0;
      if (inp.pos < inp.buf.length) b = inp.buf[inp.pos++]!;
      else this.overrun++;
      this.bitbuf |= b << this.bitcnt;
      this.bitcnt += 8;
    }
  }
  bits(n: number): number {
    if (n === 0) return 0;
    this.need(n);
    const v = this.bitbuf & ((1 << n) - 1);
    this.bitbuf >>>= n;
    this.bitcnt -= n;
    return v;
  }
  alignByte(): void {
    const drop = this.bitcnt & 7;
    this.bitbuf >>>= drop;
    this.bitcnt -= drop;
  }
}

/** MSB-first bit reader (bzip2). n <= 24 per call. */
export class MsbBits {
  bitbuf = 0;
  bitcnt = 0;
  overrun = 0;
  constructor(readonly input: InputBuffer) {}
  bits(n: number): number {
    const inp = this.input;
    while (this.bitcnt < n) {
      let b = 0;
      if (inp.pos < inp.buf.length) b = inp.buf[inp.pos++]!;
      else this.overrun++;
      this.bitbuf = (this.bitbuf << 8) | b;
      this.bitcnt += 8;
    }
    this.bitcnt -= n;
    return (this.bitbuf >>> this.bitcnt) & ((1 << n) - 1);
  }
  bit(): number {
    return this.bits(1);
  }
  alignByte(): void {
    this.bitcnt -= this.bitcnt & 7;
  }
}

/** Drives a decoder generator, feeding it from `input` whenever it yields NEED_INPUT. */
export async function* runDecoder(
  decoder: Generator<DecoderStep, void, void>,
  inbuf: InputBuffer,
  input: AsyncIterable<Buffer>,
): AsyncGenerator<Buffer> {
  const it = input[Symbol.asyncIterator]();
  try {
    for (;;) {
      const r = decoder.next();
      if (r.done) return;
      if (r.value === NEED_INPUT) {
        if (inbuf.eof) throw new Error('decoder asked for input after end of input');
        const n = await it.next();
        if (n.done) inbuf.eof = true;
        else inbuf.push(n.value);
      } else if (r.value.length > 0) yield r.value;
    }
  } finally {
    await it.return?.();
  }
}
