/**
 * OLE1 embedded objects (MS-OLEDS §2.2.4), as RTF `\objdata` and OLE2 `\x01Ole10Native` carry them:
 * version, format 2 = embedded, class name, topic, item, then the native data. For class
 * "Package" the native data wraps the dropped file (label, source path, then a length-prefixed
 * copy of the file), which is what users double-click, so that file is yielded; other classes
 * yield their native data (often an OLE2 file such as an Equation Editor object).
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

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
    const nativeStart = pos + 4;
    // A size past the end (common in crafted RTF objects) is clipped: the bytes present are scanned.
    const nativeEnd = Math.min(source.size, nativeStart + head.readUInt32LE(pos));
    const nativeSize = nativeEnd - nativeStart;
    const pkg = className === 'Package' ? packagedFile(head, nativeStart, nativeEnd) : null;
    if (pkg) {
      yield {
        name: pkg.name,
        size: pkg.end - pkg.start,
        open: () => limitOutput('ole1', source.stream(pkg.start, pkg.end), ctx, pkg.end - pkg.start),
      };
      return;
    }
    yield {
      name: className || 'native',
      size: nativeSize,
      open: () => limitOutput('ole1', source.stream(nativeStart, nativeEnd), ctx, Math.max(1, nativeSize)),
    };
  },
};
