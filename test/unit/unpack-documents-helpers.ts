/**
 * Builders for document-unpacker tests: a minimal OLE2 compound-file writer, a VBA "compressor"
 * (literal tokens only, valid MS-OVBA), a uuencoder, an LZW encoder (PDF flavour), and a generic
 * drain that collects every entry.
 */
import { BufferSource } from '../../src/engine/source.js';
import type { UnpackContext, Unpacker } from '../../src/engine/unpack/types.js';

export const ctx = (over: Partial<UnpackContext> = {}): UnpackContext => ({
  maxFileSize: 10 * 1024 * 1024,
  maxFiles: 1000,
  maxCompressionRatio: 1000,
  signal: new AbortController().signal,
  ...over,
});

export async function drain(
  u: Unpacker,
  data: Buffer,
  c: UnpackContext = ctx(),
): Promise<{ name: string; data: Buffer }[]> {
  const out: { name: string; data: Buffer }[] = [];
  for await (const e of u.entries(new BufferSource(data), c)) {
    const parts: Buffer[] = [];
    for await (const p of e.open()) parts.push(p);
    out.push({ name: e.name, data: Buffer.concat(parts) });
  }
  return out;
}

const NOSTREAM = 0xffffffff;
const ENDOFCHAIN = 0xfffffffe;
const FATSECT = 0xfffffffd;

interface DirNode {
  name: string;
  type: 1 | 2 | 5;
  children: DirNode[];
  data?: Buffer;
  index?: number;
  start?: number;
}

/**
 * A version-3 compound file (512-byte sectors). The mini-stream cutoff is written as 0 so every
 * stream lives in the regular FAT (readers honour the header's value); `cyclic` makes the last
 * sector of the first non-empty stream point back to its first.
 */
export function buildCfb(items: { path: string; data: Buffer }[], opts: { cyclic?: boolean } = {}): Buffer {
  const root: DirNode = { name: 'Root Entry', type: 5, children: [] };
  for (const it of items) {
    const parts = it.path.split('/');
    let node = root;
    for (const p of parts.slice(0, -1)) {
      let next = node.children.find((c) => c.name === p && c.type === 1);
      if (!next) {
        next = { name: p, type: 1, children: [] };
        node.children.push(next);
      }
      node = next;
    }
    node.children.push({ name: parts.at(-1)!, type: 2, children: [], data: it.data });
  }
  const all: DirNode[] = [];
  const visit = (n: DirNode) => {
    n.index = all.length;
    all.push(n);
    for (const c of n.children) visit(c);
  };
  visit(root);

  const dataSectors = all.reduce((s, n) => s + Math.ceil((n.data?.length ?? 0) / 512), 0);
  const dirSectors = Math.ceil((all.length * 128) / 512);
  let nFat = 1;
  while (nFat * 128 < nFat + dirSectors + dataSectors) nFat++;
  const total = nFat + dirSectors + dataSectors;
  const fat = new Uint32Array(nFat * 128).fill(NOSTREAM);
  for (let i = 0; i < nFat; i++) fat[i] = FATSECT;
  const chainOf = (first: number, count: number) => {
    for (let i = 0; i < count; i++) fat[first + i] = i === count - 1 ? ENDOFCHAIN : first + i + 1;
  };
  chainOf(nFat, dirSectors);
  let next = nFat + dirSectors;
  let cycled = false;
  for (const n of all) {
    const count = Math.ceil((n.data?.length ?? 0) / 512);
    if (count === 0) continue;
    n.start = next;
    chainOf(next, count);
    if (opts.cyclic && !cycled) {
      fat[next + count - 1] = next;
      cycled = true;
    }
    next += count;
  }

  const out = Buffer.alloc(512 * (total + 1));
  const h = out.subarray(0, 512);
  Buffer.from('d0cf11e0a1b11ae1', 'hex').copy(h, 0);
  h.writeUInt16LE(0x3e, 0x18);
  h.writeUInt16LE(3, 0x1a);
  h.writeUInt16LE(0xfffe, 0x1c);
  h.writeUInt16LE(9, 0x1e);
  h.writeUInt16LE(6, 0x20);
  h.writeUInt32LE(nFat, 0x2c);
  h.writeUInt32LE(nFat, 0x30); // first directory sector
  h.writeUInt32LE(0, 0x38); // mini-stream cutoff (see above)
  h.writeUInt32LE(ENDOFCHAIN, 0x3c);
  h.writeUInt32LE(ENDOFCHAIN, 0x44);
  for (let i = 0; i < 109; i++) h.writeUInt32LE(i < nFat ? i : NOSTREAM, 0x4c + i * 4);
  const sector = (n: number) => out.subarray(512 * (n + 1), 512 * (n + 2));
  for (let i = 0; i < fat.length; i++) sector(Math.floor(i / 128)).writeUInt32LE(fat[i]!, (i % 128) * 4);
  for (const n of all) {
    const off = 512 * (nFat + 1) + n.index! * 128;
    const e = out.subarray(off, off + 128);
    const name = Buffer.from(`${n.name}\0`, 'utf16le');
    name.copy(e, 0, 0, Math.min(64, name.length));
    e.writeUInt16LE(Math.min(64, name.length), 64);
    e[66] = n.type;
    e[67] = 1; // black
    e.writeUInt32LE(NOSTREAM, 68);
    e.writeUInt32LE(NOSTREAM, 72);
    e.writeUInt32LE(n.children[0]?.index ?? NOSTREAM, 76);
    e.writeUInt32LE(n.start ?? ENDOFCHAIN, 116);
    e.writeUInt32LE(n.data?.length ?? 0, 120);
  }
  // Siblings as a right-leaning chain: a valid (if unbalanced) tree.
  for (const n of all)
    for (let i = 0; i + 1 < n.children.length; i++)
      out.writeUInt32LE(n.children[i + 1]!.index!, 512 * (nFat + 1) + n.children[i]!.index! * 128 + 72);
  for (const n of all) if (n.data && n.start !== undefined) n.data.copy(out, 512 * (n.start + 1));
  return out;
}

/** MS-OVBA CompressedContainer using literal tokens only (valid input for any conforming reader). */
export function vbaCompress(src: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from([1])];
  for (let off = 0; off < src.length; off += 3000) {
    const piece = src.subarray(off, Math.min(src.length, off + 3000));
    const body: number[] = [];
    for (let i = 0; i < piece.length; i += 8) {
      body.push(0); // 8 literal tokens
      for (let j = i; j < Math.min(piece.length, i + 8); j++) body.push(piece[j]!);
    }
    const header = Buffer.alloc(2);
    header.writeUInt16LE(0xb000 | (body.length + 2 - 3));
    parts.push(header, Buffer.from(body));
  }
  return Buffer.concat(parts);
}

/** A VBA `dir` stream (before compression) naming one module stream and its source offset. */
export function vbaDir(moduleStream: string, offset: number): Buffer {
  const rec = (id: number, data: Buffer) => {
    const h = Buffer.alloc(6);
    h.writeUInt16LE(id, 0);
    h.writeUInt32LE(data.length, 2);
    return Buffer.concat([h, data]);
  };
  const version = Buffer.alloc(12); // PROJECTVERSION: Reserved = 4, then 4 + 2 bytes
  version.writeUInt16LE(0x0009, 0);
  version.writeUInt32LE(4, 2);
  const off = Buffer.alloc(4);
  off.writeUInt32LE(offset);
  return Buffer.concat([
    rec(0x0001, Buffer.from([1, 0, 0, 0])),
    version,
    rec(0x0019, Buffer.from(moduleStream)),
    rec(0x001a, Buffer.from(moduleStream)),
    rec(0x0032, Buffer.from(moduleStream, 'utf16le')),
    rec(0x0031, off),
    rec(0x002b, Buffer.alloc(0)),
    rec(0x0010, Buffer.alloc(0)),
  ]);
}

/** POSIX uuencode body lines for `data` (without the begin/end lines). */
export function uuencodeLines(data: Buffer): string[] {
  const ch = (v: number) => String.fromCharCode(v === 0 ? 0x60 : v + 0x20);
  const lines: string[] = [];
  for (let off = 0; off < data.length; off += 45) {
    const piece = data.subarray(off, off + 45);
    let line = ch(piece.length);
    for (let i = 0; i < piece.length; i += 3) {
      const n = ((piece[i] ?? 0) << 16) | ((piece[i + 1] ?? 0) << 8) | (piece[i + 2] ?? 0);
      line += ch((n >> 18) & 63) + ch((n >> 12) & 63) + ch((n >> 6) & 63) + ch(n & 63);
    }
    lines.push(line);
  }
  lines.push('`');
  return lines;
}

/** PDF LZW (EarlyChange 1, MSB-first codes, clear first, EOD last). */
export function lzwEncode(data: Buffer): Buffer {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  let width = 9;
  const emit = (code: number) => {
    acc = (acc << width) | code;
    bits += width;
    while (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
    acc &= (1 << bits) - 1;
  };
  let dict = new Map<string, number>();
  let next = 258;
  const known = (x: string) => x.length === 1 || dict.has(x);
  const code = (x: string) => (x.length === 1 ? x.charCodeAt(0) : dict.get(x)!);
  emit(256);
  let w = '';
  for (const b of data) {
    const wc = w + String.fromCharCode(b);
    if (known(wc)) {
      w = wc;
      continue;
    }
    emit(code(w));
    dict.set(wc, next++);
    // The decoder adds each entry one code later, so it widens when our count is one higher.
    if (next >= 1 << width && width < 12) width++;
    if (next >= 4000) {
      emit(256);
      dict = new Map();
      next = 258;
      width = 9;
    }
    w = String.fromCharCode(b);
  }
  if (w) emit(code(w));
  emit(257);
  if (bits > 0) out.push((acc << (8 - bits)) & 0xff);
  return Buffer.from(out);
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const lp = (s: string) => Buffer.concat([u32(s.length + 1), Buffer.from(`${s}\0`, 'latin1')]);

/** OLE1 "Package" native data (MS-OLEDS §2.3.6 as Packager writes it) wrapping `file`. */
export function packageNative(label: string, file: Buffer): Buffer {
  const path = `C:\\Users\\x\\${label}`;
  return Buffer.concat([
    Buffer.from([2, 0]),
    Buffer.from(`${label}\0${path}\0`, 'latin1'),
    Buffer.from([0, 0, 3, 0]),
    lp(path),
    u32(file.length),
    file,
  ]);
}

/** An embedded OLE1 object (MS-OLEDS §2.2.4): version, format 2, class, topic, item, native data. */
export function ole1Object(className: string, native: Buffer): Buffer {
  return Buffer.concat([u32(0x0501), u32(2), lp(className), lp(''), lp(''), u32(native.length), native]);
}
