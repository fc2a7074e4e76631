/**
 * uuencoded files in plain text (POSIX uuencode(1)): every `begin MODE NAME` … `end` block, and the
 * base64 variant `begin-base64 MODE NAME` … `====`, is yielded under its name. Mail is handled by
 * the MIME unpacker, which finds the same blocks inside text parts; this one covers news articles,
 * pasted text and bare .uu files.
 */
import type { ObjectSource } from '../source.js';
import { Base64Decoder, type StreamDecoder, UuDecoder } from './decoders.js';
import { EntryCounter, limitOutput } from './limits.js';
import { lineBatches, UU_BEGIN, type UuBlock, UuScanner } from './textlines.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

/** Decodes one block's body as it streams from the source. */
export async function* decodeUuBlock(
  source: ObjectSource,
  b: UuBlock,
  ctx: UnpackContext,
): AsyncGenerator<Buffer> {
  const d: StreamDecoder = b.base64 ? new Base64Decoder() : new UuDecoder();
  const body = async function* () {
    for await (const chunk of source.stream(b.start, b.end)) {
      const out = d.write(chunk);
      if (out.length) yield out;
    }
    const last = d.end();
    if (last.length) yield last;
  };
  yield* limitOutput('uuencode', body(), ctx, Math.max(1, b.end - b.start));
}

async function findBlocks(source: ObjectSource, ctx: UnpackContext): Promise<UuBlock[]> {
  const blocks: UuBlock[] = [];
  const counter = new EntryCounter('uuencode', ctx);
  const scan = new UuScanner();
  for await (const batch of lineBatches(source, ctx)) {
    for (const l of batch) {
      const b = scan.line(l);
      if (b) {
        counter.next();
        blocks.push(b);
      }
    }
  }
  const last = scan.close(source.size);
  if (last) {
    counter.next();
    blocks.push(last);
  }
  return blocks;
}

export const uuencodeUnpacker: Unpacker = {
  type: 'uuencode',
  // A `begin` line in the first 4 KiB (after a short preamble, as in news articles).
  detect: (head) =>
    head.indexOf('begin', 0, 'latin1') >= 0 && // cheap refusal of the common case, before splitting lines
    head
      .toString('latin1')
      .split(/\r?\n/)
      .some((l) => UU_BEGIN.test(l)),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    for (const b of await findBlocks(source, ctx))
      yield { name: b.name, open: () => decodeUuBlock(source, b, ctx) };
  },
};
