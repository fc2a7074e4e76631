/**
 * SZDD: files packed by MS-DOS/Windows COMPRESS.EXE (expanded by EXPAND.EXE), e.g. SETUP.EX_.
 * Header (14 bytes): "SZDD" 88 F0 27 33, mode 'A', the missing last character of the name, and the
 * uncompressed size (u32 LE). Body: LZSS with a 4 KiB window pre-filled with spaces and the write
 * position starting at 4096-16; each control byte's bits (LSB first) say literal (1) or a 2-byte
 * match (0): 12-bit absolute window position, 4-bit length + 3. Same layout as libmspack's szddd.c.
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { type DecoderStep, InputBuffer, NEED_INPUT, runDecoder } from './bitreader.js';
import { asUnpackError, Counter, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const MAGIC = Buffer.from([0x53, 0x5a, 0x44, 0x44, 0x88, 0xf0, 0x27, 0x33]);
const OUT = 64 * 1024;

export function* szddDecode(input: InputBuffer, size: number): Generator<DecoderStep, void, void> {
  const win = new Uint8Array(4096).fill(0x20);
  let wpos = 4096 - 16;
  let produced = 0;
  let out = Buffer.allocUnsafe(OUT);
  let opos = 0;
  // One control byte produces at most 8 x 18 bytes, so flushing between control bytes keeps chunks <= 64 KiB.
  const put = (b: number): void => {
    win[wpos] = b;
    wpos = (wpos + 1) & 4095;
    out[opos++] = b;
    produced++;
  };
  for (;;) {
    if (opos > OUT - 8 * 18) {
      yield out.subarray(0, opos);
      out = Buffer.allocUnsafe(OUT);
      opos = 0;
    }
    if (input.available < 17 && !input.eof) {
      yield NEED_INPUT;
      continue;
    }
    if (input.available === 0 || produced >= size) break;
    const control = input.buf[input.pos++]!;
    for (let bit = 0; bit < 8 && produced < size; bit++) {
      if (control & (1 << bit)) {
        if (input.available < 1) break;
        put(input.buf[input.pos++]!);
      } else {
        if (input.available < 2) break;
        const b0 = input.buf[input.pos++]!;
        const b1 = input.buf[input.pos++]!;
        let from = b0 | ((b1 & 0xf0) << 4);
        const len = (b1 & 0x0f) + 3;
        for (let k = 0; k < len && produced < size; k++) {
          put(win[from]!);
          from = (from + 1) & 4095;
        }
      }
    }
  }
  if (opos > 0) yield out.subarray(0, opos);
  if (produced < size) throw new UnpackError('szdd', 'ERR_SZDD_TRUNCATED', `${produced} of ${size} bytes`);
}

export const szddUnpacker: Unpacker = {
  type: 'szdd',
  detect(head: Buffer): boolean {
    return head.length >= 14 && head.subarray(0, 8).equals(MAGIC) && head[8] === 0x41;
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const head = await src.read(0, 14);
    if (!szddUnpacker.detect(head, src.size))
      throw new UnpackError('szdd', 'ERR_SZDD_CORRUPT', 'bad SZDD header');
    new EntryCounter('szdd', ctx).next();
    const size = head.readUInt32LE(10);
    yield {
      name: '',
      size,
      async *open() {
        const counter = new Counter();
        const inbuf = new InputBuffer();
        try {
          yield* limitOutput(
            'szdd',
            runDecoder(szddDecode(inbuf, size), inbuf, counter.count(src.stream(14, src.size))),
            ctx,
            () => Math.max(1, counter.bytes - inbuf.available),
          );
        } catch (e) {
          throw asUnpackError('szdd', 'ERR_SZDD_CORRUPT', e);
        }
      },
    };
  },
};
