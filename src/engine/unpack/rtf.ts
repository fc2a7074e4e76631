/**
 * RTF embedded objects: each `\objdata` group's hex is decoded and yielded (an OLE1 object, which
 * `ole1Unpacker` opens in turn). OLE1 (MS-OLEDS §2.2.4): version, format 2 = embedded, class name,
 * topic, item, then the native data; for class "Package" the native data wraps the dropped file
 * (label, source path, then a length-prefixed copy of the file), which is what users double-click.
 */
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const KEYWORD = '\\objdata';

async function findObjData(
  source: ObjectSource,
  ctx: UnpackContext,
): Promise<{ start: number; end: number }[]> {
  const found: { start: number; end: number }[] = [];
  let base = 0;
  let text = '';
  let open: number | null = null;
  for await (const chunk of source.stream()) {
    if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
    text += chunk.toString('latin1');
    let cursor = 0;
    for (;;) {
      if (open !== null) {
        const close = text.indexOf('}', Math.max(cursor, open - base));
        if (close < 0) break;
        found.push({ start: open, end: base + close });
        if (found.length > ctx.maxFiles)
          throw new UnpackLimitError('MaxFiles', `rtf: more than ${ctx.maxFiles} objects`);
        open = null;
        cursor = close + 1;
        continue;
      }
      const k = text.indexOf(KEYWORD, cursor);
      if (k < 0) break;
      open = base + k + KEYWORD.length;
      cursor = k + KEYWORD.length;
    }
    const cut =
      open !== null
        ? Math.max(0, Math.min(open - base, text.length))
        : Math.max(0, text.length - KEYWORD.length);
    text = text.slice(cut);
    base += cut;
  }
  if (open !== null) found.push({ start: open, end: source.size });
  return found;
}

async function* hexBytes(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let half = '';
  for await (const c of chunks) {
    const digits = half + c.toString('latin1').replace(/[^0-9a-fA-F]/g, '');
    const even = digits.length - (digits.length % 2);
    if (even) yield Buffer.from(digits.slice(0, even), 'hex');
    half = digits.slice(even);
  }
}

export const rtfUnpacker: Unpacker = {
  type: 'rtf',
  detect: (head) => head.subarray(0, 5).toString('latin1') === '{\\rtf',
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    let n = 0;
    for (const o of await findObjData(source, ctx)) {
      n++;
      yield {
        name: `objdata-${n}`,
        open: () => limitOutput('rtf', hexBytes(source.stream(o.start, o.end)), ctx, o.end - o.start),
      };
    }
  },
};

/** Reads a length-prefixed (uint32 LE) string at `pos`; returns the value and the next offset. */
function lpString(b: Buffer, pos: number): [string, number] {
  if (pos + 4 > b.length) throw new UnpackError('ole1', 'ERR_OLE1_TRUNCATED', 'header cut short');
  const len = b.readUInt32LE(pos);
  if (pos + 4 + len > b.length)
    throw new UnpackError('ole1', 'ERR_OLE1_TRUNCATED', 'string runs past the header');
  return [
    b
      .subarray(pos + 4, pos + 4 + len)
      .toString('latin1')
      .replace(/\0+$/, ''),
    pos + 4 + len,
  ];
}

function cString(b: Buffer, pos: number): [string, number] {
  const end = b.indexOf(0, pos);
  if (end < 0) throw new UnpackError('ole1', 'ERR_OLE1_TRUNCATED', 'unterminated package string');
  return [b.subarray(pos, end).toString('latin1'), end + 1];
}

/**
 * The file inside OLE1 "Package" native data: 2-byte signature, label\0, source path\0, 4 bytes,
 * uint32-prefixed temp path, uint32 size, the file. Returns its range, or null if `b` does not hold it.
 */
export function packagedFile(
  b: Buffer,
  start: number,
  end: number,
): { name: string; start: number; end: number } | null {
  try {
    const [label, a] = cString(b, start + 2);
    const [, p] = cString(b, a);
    const [, q] = lpString(b, p + 4);
    if (q + 4 > b.length) return null;
    const size = b.readUInt32LE(q);
    if (q + 4 + size > end) return null;
    return { name: label || 'package', start: q + 4, end: q + 4 + size };
  } catch {
    return null;
  }
}

export const ole1Unpacker: Unpacker = {
  type: 'ole1',
  detect: (head) => head.length >= 12 && head.readUInt32LE(0) === 0x0501 && head.readUInt32LE(4) === 2,
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    const head = await source.read(0, Math.min(source.size, 8192));
    let [className, pos] = lpString(head, 8);
    [, pos] = lpString(head, pos); // topic
    [, pos] = lpString(head, pos); // item
    if (pos + 4 > head.length) throw new UnpackError('ole1', 'ERR_OLE1_TRUNCATED', 'no native data size');
    const nativeSize = head.readUInt32LE(pos);
    const nativeStart = pos + 4;
    if (nativeStart + nativeSize > source.size)
      throw new UnpackError('ole1', 'ERR_OLE1_TRUNCATED', 'native data runs past the end');
    if (nativeSize > ctx.maxFileSize)
      throw new UnpackLimitError('MaxFileSize', `ole1: native data of ${nativeSize} bytes`);
    const pkg = className === 'Package' ? packagedFile(head, nativeStart, nativeStart + nativeSize) : null;
    if (pkg) {
      yield { name: pkg.name, size: pkg.end - pkg.start, open: () => source.stream(pkg.start, pkg.end) };
      return;
    }
    yield {
      name: className || 'native',
      size: nativeSize,
      open: () => source.stream(nativeStart, nativeStart + nativeSize),
    };
  },
};
