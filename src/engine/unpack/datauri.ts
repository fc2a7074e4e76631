/**
 * Base64 `data:` URIs (RFC 2397) in HTML and other text: browsers turn them into downloads, so the
 * payload is scanned as a file of its own. One streaming pass records where each payload lies.
 */
import { UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { Base64Decoder } from './decoders.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const MARKER = /data:[\w.+-]*\/[\w.+-]*(?:;[\w.+-]+=[^;,"'\s]*)*;base64,/gi;
const CARRY = 256;

function isB64(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2b ||
    c === 0x2f ||
    c === 0x3d
  );
}

async function findPayloads(
  source: ObjectSource,
  ctx: UnpackContext,
): Promise<{ start: number; end: number }[]> {
  const found: { start: number; end: number }[] = [];
  let carry = '';
  let carryStart = 0;
  let open: number | null = null;
  let pos = 0;
  for await (const chunk of source.stream()) {
    if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
    let i = 0;
    if (open !== null) {
      while (i < chunk.length && isB64(chunk[i]!)) i++;
      if (i < chunk.length) {
        found.push({ start: open, end: pos + i });
        open = null;
      }
    }
    if (open === null) {
      const text = carry + chunk.subarray(i).toString('latin1');
      const base = carryStart;
      MARKER.lastIndex = 0;
      let m: RegExpExecArray | null = MARKER.exec(text);
      let lastEnd = 0;
      while (m) {
        const start = base + m.index + m[0].length;
        let j = start - pos;
        while (j < chunk.length && isB64(chunk[j]!)) j++;
        if (j < chunk.length) found.push({ start, end: pos + j });
        else open = start;
        if (found.length > ctx.maxFiles)
          throw new UnpackLimitError('MaxFiles', `data-uri: more than ${ctx.maxFiles} payloads`);
        lastEnd = j + pos - base;
        if (open !== null) break;
        MARKER.lastIndex = Math.max(lastEnd, MARKER.lastIndex);
        m = MARKER.exec(text);
      }
      const keepFrom = Math.max(lastEnd, text.length - CARRY);
      carry = open === null ? text.slice(keepFrom) : '';
      carryStart = base + keepFrom;
    }
    pos += chunk.length;
    if (open !== null) carryStart = pos;
  }
  if (open !== null) found.push({ start: open, end: source.size });
  return found;
}

export const dataUriUnpacker: Unpacker = {
  type: 'data-uri',
  detect: (head) => {
    const t = head.toString('latin1').toLowerCase();
    return (
      (t.includes('<html') || t.includes('<a ') || t.includes('<img') || t.includes('<!doctype')) &&
      t.includes('data:')
    );
  },
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    const payloads = await findPayloads(source, ctx);
    let n = 0;
    for (const p of payloads) {
      n++;
      yield {
        name: `data-uri-${n}`,
        async *open() {
          const d = new Base64Decoder();
          let produced = 0;
          for await (const chunk of source.stream(p.start, p.end)) {
            const out = d.write(chunk);
            produced += out.length;
            if (produced > ctx.maxFileSize)
              throw new UnpackLimitError('MaxFileSize', 'data-uri payload too large');
            if (out.length) yield out;
          }
        },
      };
    }
  },
};
