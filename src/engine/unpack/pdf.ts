/**
 * PDF streams (ISO 32000-1 §7.3.8): each `stream … endstream` body is yielded, decoded through the
 * filters its dictionary names (Flate, LZW, RunLength, ASCIIHex, ASCII85, PNG predictors; see
 * pdffilters.ts), as raw bytes otherwise. Object streams (/Type /ObjStm, §7.5.7) are streams like any
 * other, so their decoded objects are scanned too. Nothing follows object references, so reference
 * loops in hostile files cost nothing.
 * The body ends at `endstream` rather than trusting /Length, which is often an indirect
 * reference or wrong in hostile files. One streaming pass records the offsets.
 */
import { UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { limitOutput } from './limits.js';
import { ascii85, asciiHex, inflate, lzw, pngPredictor, runLength } from './pdffilters.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

interface PdfStream {
  start: number;
  end: number;
  filters: string[];
  params: Record<string, number>;
  /** `N G` of the enclosing object, when its header was seen. */
  obj: string | null;
}

const CARRY = 2048;
const FILTERS = /\/(FlateDecode|Fl|ASCIIHexDecode|AHx|ASCII85Decode|A85|LZWDecode|LZW|RunLengthDecode|RL)\b/g;

function lastMatch(text: string, re: RegExp): RegExpExecArray | null {
  let last: RegExpExecArray | null = null;
  for (const m of text.matchAll(re)) last = m;
  return last;
}

async function findStreams(source: ObjectSource, ctx: UnpackContext): Promise<PdfStream[]> {
  const found: PdfStream[] = [];
  let text = '';
  let base = 0;
  let open: Omit<PdfStream, 'end'> | null = null;
  for await (const chunk of source.stream()) {
    if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
    text += chunk.toString('latin1');
    let cursor = 0;
    for (;;) {
      if (open) {
        const e = text.indexOf('endstream', Math.max(cursor, open.start - base));
        if (e < 0) break;
        let end = base + e;
        if (text[e - 1] === '\n') end--;
        if (text[e - 2] === '\r' && text[e - 1] === '\n') end--;
        found.push({ ...open, end: Math.max(open.start, end) });
        if (found.length > ctx.maxFiles)
          throw new UnpackLimitError('MaxFiles', `pdf: more than ${ctx.maxFiles} streams`);
        open = null;
        cursor = e + 9;
        continue;
      }
      const s = text.indexOf('stream', cursor);
      if (s < 0 || s + 8 > text.length) break;
      if (text.startsWith('endstream', s - 3)) {
        cursor = s + 6;
        continue;
      }
      let bodyAt = s + 6;
      if (text[bodyAt] === '\r') bodyAt++;
      if (text[bodyAt] === '\n') bodyAt++;
      // The stream's dictionary: from its `N G obj` (a nested << >> such as /DecodeParms must not hide /Filter).
      const before = text.slice(Math.max(0, s - CARRY), s);
      const obj = lastMatch(before, /(\d+)\s+(\d+)\s+obj\b/g);
      const dict = before.slice(obj ? obj.index : Math.max(0, before.lastIndexOf('<<')));
      const filters = [...dict.matchAll(FILTERS)].map((m) => m[1]!);
      open = {
        start: base + bodyAt,
        filters,
        params: decodeParams(dict),
        obj: obj ? `${obj[1]} ${obj[2]}` : null,
      };
      cursor = bodyAt;
    }
    // Keep only what a keyword or dictionary may still need.
    const keep = open ? Math.max(open.start - base, text.length - CARRY) : text.length - CARRY;
    const cut = Math.max(0, Math.min(keep, text.length - 16));
    text = text.slice(cut);
    base += cut;
  }
  if (open) found.push({ ...open, end: source.size });
  return found;
}

/** The numbers of a /DecodeParms dictionary that the filters use, when there is exactly one. */
function decodeParams(dict: string): Record<string, number> {
  const m = /\/DecodeParms\s*<<([^<>]*)>>/.exec(dict);
  const out: Record<string, number> = {};
  if (!m) return out;
  for (const [, k, v] of m[1]!.matchAll(/\/(\w+)\s+(-?\d+)/g)) out[k!] = Number(v);
  return out;
}

function decode(source: ObjectSource, s: PdfStream, ctx: UnpackContext): AsyncIterable<Buffer> {
  // Small input chunks bound what one inflate step can produce before the limits see it (16 KiB × ratio).
  let data: AsyncIterable<Buffer> = source.stream(s.start, s.end, 16 * 1024);
  const p = s.params;
  for (const f of s.filters) {
    if (f === 'ASCIIHexDecode' || f === 'AHx') data = asciiHex(data);
    else if (f === 'ASCII85Decode' || f === 'A85') data = ascii85(data);
    else if (f === 'RunLengthDecode' || f === 'RL') data = runLength(data);
    else {
      data = f === 'LZWDecode' || f === 'LZW' ? lzw(data, p.EarlyChange ?? 1) : inflate(data);
      if ((p.Predictor ?? 1) >= 10)
        data = pngPredictor(data, {
          predictor: p.Predictor!,
          colors: p.Colors ?? 1,
          bitsPerComponent: p.BitsPerComponent ?? 8,
          columns: p.Columns ?? 1,
        });
    }
  }
  return limitOutput('pdf', data, ctx, s.end - s.start);
}

export const pdfUnpacker: Unpacker = {
  type: 'pdf',
  detect: (head) => head.subarray(0, 1024).toString('latin1').includes('%PDF-'),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    const streams = await findStreams(source, ctx);
    let n = 0;
    for (const s of streams) {
      n++;
      yield { name: s.obj ? `obj ${s.obj}` : `stream-${n}`, open: () => decode(source, s, ctx) };
    }
  },
};
