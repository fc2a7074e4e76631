/** .bz2 files: one entry, the decompressed stream (all concatenated streams), no stored name. */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { InputBuffer, runDecoder } from './bitreader.js';
import { bunzip2 } from './bzip2dec.js';
import { asUnpackError, Counter, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

export const bzip2Unpacker: Unpacker = {
  type: 'bzip2',
  detect(head: Buffer): boolean {
    return (
      head.length >= 10 &&
      head[0] === 0x42 &&
      head[1] === 0x5a &&
      head[2] === 0x68 &&
      head[3]! >= 0x31 &&
      head[3]! <= 0x39 &&
      head.readUIntBE(4, 6) === 0x314159265359
    );
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const head = await src.read(0, 10);
    if (!bzip2Unpacker.detect(head, src.size))
      throw new UnpackError('bzip2', 'ERR_BZIP2_CORRUPT', 'bad bzip2 header');
    new EntryCounter('bzip2', ctx).next();
    yield {
      name: '',
      async *open() {
        const counter = new Counter();
        const inbuf = new InputBuffer();
        try {
          yield* limitOutput(
            'bzip2',
            runDecoder(bunzip2(inbuf), inbuf, counter.count(src.stream(0, src.size))),
            ctx,
            () => Math.max(1, counter.bytes - inbuf.available),
          );
        } catch (e) {
          throw asUnpackError('bzip2', 'ERR_BZIP2_CORRUPT', e);
        }
      },
    };
  },
};
