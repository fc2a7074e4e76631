/**
 * 7z archives (7-Zip's DOC/7zFormat.txt). Supported: plain and LZMA-encoded headers, coders Copy,
 * LZMA, LZMA2 and the x86 BCJ filter in linear chains, solid folders with several files (substreams),
 * empty files skipped. Folders using other coders (BCJ2, Delta, PPMd, ARM filters) are listed and
 * open() throws ERR_7Z_METHOD; AES folders are flagged `encrypted` and open() throws ERR_ENCRYPTED.
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { bcjX86Decode } from './bcj.js';
import { InputBuffer, runDecoder } from './bitreader.js';
import { asUnpackError, Counter, checkAbort, EntryCounter, limitOutput } from './limits.js';
import { lzma2Decode, lzmaDecode } from './lzma.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const SIG = Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]);
const MAX_HEADER = 64 * 1024 * 1024;
const MAX_ITEMS = 1_000_000;
const MAX_RESTARTS = 16;

const zerr = (code: string, msg: string): UnpackError => new UnpackError('7z', code, msg);

interface Coder {
  id: string;
  props: Buffer;
  numIn: number;
  numOut: number;
}
interface Folder {
  coders: Coder[];
  unpackSizes: number[];
  packIndex: number; // first pack stream of this folder
  numPacked: number;
  /** [in stream index, out stream index]: the coder input fed by another coder's output. */
  bindPairs: [number, number][];
  /** Folder in-stream index of each packed stream. */
  packedStreams: number[];
}
interface Streams {
  packPos: number;
  packSizes: number[];
  folders: Folder[];
  substreams: number[][]; // per folder: file sizes in order
}

/** Cursor over header bytes; every read is bounds-checked. */
class Reader {
  p = 0;
  constructor(readonly b: Buffer) {}
  byte(): number {
    if (this.p >= this.b.length) throw zerr('ERR_7Z_CORRUPT', 'header ends early');
    return this.b[this.p++]!;
  }
  bytes(n: number): Buffer {
    if (n < 0 || this.p + n > this.b.length) throw zerr('ERR_7Z_CORRUPT', 'header ends early');
    const s = this.b.subarray(this.p, this.p + n);
    this.p += n;
    return s;
  }
  /** 7z variable-length number (first byte's leading ones = extra bytes). */
  num(): number {
    const first = this.byte();
    let mask = 0x80;
    let v = 0;
    for (let i = 0; i < 8; i++) {
      if ((first & mask) === 0) return v + (first & (mask - 1)) * 2 ** (8 * i);
      v += this.byte() * 2 ** (8 * i);
      mask >>= 1;
    }
    return v;
  }
  count(): number {
    const n = this.num();
    if (n > MAX_ITEMS) throw zerr('ERR_7Z_CORRUPT', `count ${n} too large`);
    return n;
  }
  bits(n: number): boolean[] {
    const out: boolean[] = [];
    let cur = 0;
    let mask = 0;
    for (let i = 0; i < n; i++) {
      if (mask === 0) {
        cur = this.byte();
        mask = 0x80;
      }
      out.push((cur & mask) !== 0);
      mask >>= 1;
    }
    return out;
  }
  /** "AllAreDefined" byte then a bit vector. */
  defined(n: number): boolean[] {
    return this.byte() ? new Array<boolean>(n).fill(true) : this.bits(n);
  }
  skipDigests(n: number): void {
    const def = this.defined(n);
    for (const d of def) if (d) this.bytes(4);
  }
}

function readStreams(r: Reader): Streams {
  const s: Streams = { packPos: 0, packSizes: [], folders: [], substreams: [] };
  for (;;) {
    const id = r.byte();
    if (id === 0) break;
    if (id === 0x06) {
      s.packPos = r.num();
      const n = r.count();
      for (;;) {
        const t = r.byte();
        if (t === 0) break;
        if (t === 0x09) for (let i = 0; i < n; i++) s.packSizes.push(r.num());
        else if (t === 0x0a) r.skipDigests(n);
        else throw zerr('ERR_7Z_CORRUPT', `unexpected property ${t} in PackInfo`);
      }
    } else if (id === 0x07) {
      if (r.byte() !== 0x0b) throw zerr('ERR_7Z_CORRUPT', 'expected Folder');
      const nf = r.count();
      if (r.byte() !== 0) throw zerr('ERR_7Z_CORRUPT', 'external folders not supported');
      let packIndex = 0;
      for (let f = 0; f < nf; f++) {
        const nc = r.count();
        if (nc < 1 || nc > 64) throw zerr('ERR_7Z_CORRUPT', 'bad coder count');
        const coders: Coder[] = [];
        let totalIn = 0;
        let totalOut = 0;
        for (let c = 0; c < nc; c++) {
          const flag = r.byte();
          const id = r.bytes(flag & 0x0f).toString('hex');
          let numIn = 1;
          let numOut = 1;
          if (flag & 0x10) {
            numIn = r.count();
            numOut = r.count();
          }
          const props = flag & 0x20 ? r.bytes(r.count()) : Buffer.alloc(0);
          if (flag & 0x80) throw zerr('ERR_7Z_CORRUPT', 'alternative coder methods not supported');
          coders.push({ id, props, numIn, numOut });
          totalIn += numIn;
          totalOut += numOut;
        }
        if (totalOut > 64 || totalIn > 64) throw zerr('ERR_7Z_CORRUPT', 'too many coder streams');
        const bindPairs: [number, number][] = [];
        for (let b = 0; b < totalOut - 1; b++) bindPairs.push([r.num(), r.num()]);
        const numPacked = totalIn - (totalOut - 1);
        if (numPacked < 1) throw zerr('ERR_7Z_CORRUPT', 'folder without packed stream');
        const packedStreams: number[] = [];
        if (numPacked > 1) for (let i = 0; i < numPacked; i++) packedStreams.push(r.num());
        else
          for (let i = 0; i < totalIn; i++)
            if (!bindPairs.some(([inIdx]) => inIdx === i)) packedStreams.push(i);
        s.folders.push({
          coders,
          unpackSizes: new Array<number>(totalOut).fill(0),
          packIndex,
          numPacked,
          bindPairs,
          packedStreams,
        });
        packIndex += numPacked;
      }
      if (r.byte() !== 0x0c) throw zerr('ERR_7Z_CORRUPT', 'expected CodersUnpackSize');
      for (const f of s.folders) for (let i = 0; i < f.unpackSizes.length; i++) f.unpackSizes[i] = r.num();
      for (;;) {
        const t = r.byte();
        if (t === 0) break;
        if (t === 0x0a) r.skipDigests(s.folders.length);
        else throw zerr('ERR_7Z_CORRUPT', `unexpected property ${t} in UnpackInfo`);
      }
    } else if (id === 0x08) {
      const counts = s.folders.map(() => 1);
      let t = r.byte();
      if (t === 0x0d) {
        let sum = 0;
        for (let i = 0; i < counts.length; i++) {
          counts[i] = r.count();
          sum += counts[i]!;
          if (sum > MAX_ITEMS) throw zerr('ERR_7Z_CORRUPT', 'too many substreams');
        }
        t = r.byte();
      }
      s.substreams = s.folders.map((f, i) => {
        const total = folderSize(f);
        return counts[i] === 0 ? [] : [total];
      });
      if (t === 0x09) {
        s.substreams = s.folders.map((f, i) => {
          const n = counts[i]!;
          if (n === 0) return [];
          const sizes: number[] = [];
          let sum = 0;
          for (let k = 0; k < n - 1; k++) {
            const v = r.num();
            sizes.push(v);
            sum += v;
          }
          sizes.push(Math.max(0, folderSize(f) - sum));
          return sizes;
        });
        t = r.byte();
      } else {
        s.substreams = s.folders.map((f, i) =>
          counts[i] === 0 ? [] : counts[i] === 1 ? [folderSize(f)] : new Array<number>(counts[i]!).fill(0),
        );
      }
      while (t !== 0) {
        if (t === 0x0a) {
          const n = s.substreams.reduce((a, x) => a + x.length, 0);
          r.skipDigests(n);
        } else throw zerr('ERR_7Z_CORRUPT', `unexpected property ${t} in SubStreamsInfo`);
        t = r.byte();
      }
    } else throw zerr('ERR_7Z_CORRUPT', `unexpected property ${id} in StreamsInfo`);
  }
  if (s.substreams.length === 0) s.substreams = s.folders.map((f) => [folderSize(f)]);
  return s;
}

/** Index of a folder's final output: the out stream no bind pair consumes. */
function finalOut(f: Folder): number {
  for (let i = 0; i < f.unpackSizes.length; i++) if (!f.bindPairs.some(([, o]) => o === i)) return i;
  return 0;
}

function folderSize(f: Folder): number {
  return f.unpackSizes[finalOut(f)] ?? 0;
}

function packStart(s: Streams, f: Folder): number {
  let p = 32 + s.packPos;
  for (let i = 0; i < f.packIndex; i++) p += s.packSizes[i] ?? 0;
  return p;
}

function isAes(f: Folder): boolean {
  return f.coders.some((c) => c.id === '06f10701');
}

/**
 * Decoded bytes of a folder: a linear chain of one-in/one-out coders (e.g. BCJ <- LZMA), followed from
 * the final output back to the packed stream. Coders with several streams (BCJ2) are not supported.
 */
function folderStream(
  src: ObjectSource,
  s: Streams,
  f: Folder,
): { out: AsyncIterable<Buffer>; counter: Counter } {
  if (isAes(f)) throw zerr('ERR_ENCRYPTED', 'folder is AES-encrypted');
  if (f.coders.some((c) => c.numIn !== 1 || c.numOut !== 1) || f.numPacked !== 1) {
    throw zerr('ERR_7Z_METHOD', `coder graph ${f.coders.map((c) => c.id).join('+')} not supported`);
  }
  const counter = new Counter();
  const visited = new Set<number>();
  // With 1-in/1-out coders, coder k owns in stream k and out stream k.
  const build = (k: number): AsyncIterable<Buffer> => {
    if (visited.has(k) || k >= f.coders.length) throw zerr('ERR_7Z_CORRUPT', 'cyclic coder graph');
    visited.add(k);
    const c = f.coders[k]!;
    const bound = f.bindPairs.find(([inIdx]) => inIdx === k);
    let input: AsyncIterable<Buffer>;
    if (bound) input = build(bound[1]);
    else {
      const pi = f.packedStreams.indexOf(k);
      if (pi < 0) throw zerr('ERR_7Z_CORRUPT', 'coder input not bound');
      const start = packStart(s, f);
      const size = s.packSizes[f.packIndex + pi] ?? 0;
      input = counter.count(src.stream(start, Math.min(src.size, start + size)));
    }
    const unpack = f.unpackSizes[k] ?? 0;
    const inbuf = new InputBuffer();
    switch (c.id) {
      case '00':
        return input;
      case '030101':
        return runDecoder(lzmaDecode(inbuf, c.props, unpack), inbuf, input);
      case '21':
        if (c.props.length < 1) throw zerr('ERR_7Z_CORRUPT', 'LZMA2 without properties');
        return runDecoder(lzma2Decode(inbuf, c.props[0]!, unpack), inbuf, input);
      case '03030103':
      case '04':
        return bcjX86Decode(input);
      default:
        throw zerr('ERR_7Z_METHOD', `coder ${c.id} not supported`);
    }
  };
  return { out: build(finalOut(f)), counter };
}

async function readHeader(src: ObjectSource, ctx: UnpackContext): Promise<Buffer> {
  const sh = await src.read(0, 32);
  if (sh.length < 32 || !sh.subarray(0, 6).equals(SIG)) throw zerr('ERR_7Z_CORRUPT', 'bad signature header');
  const off = Number(sh.readBigUInt64LE(12));
  const len = Number(sh.readBigUInt64LE(20));
  if (len > MAX_HEADER) throw zerr('ERR_7Z_CORRUPT', `header of ${len} bytes`);
  if (32 + off + len > src.size) throw zerr('ERR_7Z_TRUNCATED', 'header lies past the end of the archive');
  let header = await src.read(32 + off, len);
  // An encoded header is itself a folder to unpack (usually LZMA); a chain of them is tolerated a few times.
  for (let depth = 0; header.length > 0 && header[0] === 0x17; depth++) {
    if (depth > 4) throw zerr('ERR_7Z_CORRUPT', 'encoded header nesting');
    const r = new Reader(header);
    r.byte();
    const s = readStreams(r);
    const f = s.folders[0];
    if (!f) throw zerr('ERR_7Z_CORRUPT', 'encoded header without folder');
    if (folderSize(f) > MAX_HEADER) throw zerr('ERR_7Z_CORRUPT', 'encoded header too large');
    const parts: Buffer[] = [];
    let total = 0;
    try {
      for await (const c of folderStream(src, s, f).out) {
        checkAbort(ctx);
        total += c.length;
        if (total > MAX_HEADER) throw zerr('ERR_7Z_CORRUPT', 'encoded header too large');
        parts.push(c);
      }
    } catch (e) {
      throw asUnpackError('7z', 'ERR_7Z_CORRUPT', e);
    }
    header = Buffer.concat(parts);
  }
  return header;
}

interface FileItem {
  name: string;
  hasStream: boolean;
}

function readFiles(r: Reader): FileItem[] {
  const n = r.count();
  const files: FileItem[] = Array.from({ length: n }, (_, i) => ({ name: `file${i}`, hasStream: true }));
  for (;;) {
    const t = r.byte();
    if (t === 0) break;
    const size = r.num();
    const body = new Reader(r.bytes(size));
    if (t === 0x0e) {
      const empty = body.bits(n);
      for (let i = 0; i < n; i++) files[i]!.hasStream = !empty[i];
    } else if (t === 0x11) {
      if (body.byte() !== 0) throw zerr('ERR_7Z_CORRUPT', 'external names not supported');
      const names = body.b.subarray(1).toString('utf16le').split('\0');
      for (let i = 0; i < n && i < names.length; i++) files[i]!.name = names[i]!;
    }
  }
  return files;
}

export const sevenZipUnpacker: Unpacker = {
  type: '7z',
  detect(head: Buffer): boolean {
    return head.length >= 32 && head.subarray(0, 6).equals(SIG);
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const header = await readHeader(src, ctx);
    if (header.length === 0) return;
    const r = new Reader(header);
    if (r.byte() !== 0x01) throw zerr('ERR_7Z_CORRUPT', 'expected Header');
    let streams: Streams = { packPos: 0, packSizes: [], folders: [], substreams: [] };
    let files: FileItem[] = [];
    for (;;) {
      const id = r.byte();
      if (id === 0) break;
      if (id === 0x02 || id === 0x03)
        throw zerr('ERR_7Z_METHOD', 'archive properties / additional streams not supported');
      if (id === 0x04) streams = readStreams(r);
      else if (id === 0x05) files = readFiles(r);
      else throw zerr('ERR_7Z_CORRUPT', `unexpected property ${id} in Header`);
    }
    const counter = new EntryCounter('7z', ctx);
    // Files with streams take substreams in order, folder by folder.
    let fi = 0;
    for (let fo = 0; fo < streams.folders.length; fo++) {
      const folder = streams.folders[fo]!;
      const sizes = streams.substreams[fo] ?? [];
      let state: { it: AsyncIterator<Buffer>; pending: Buffer; pos: number; counter: Counter } | null = null;
      let restarts = 0;
      let offset = 0;
      for (const size of sizes) {
        while (fi < files.length && !files[fi]!.hasStream) fi++;
        const name = fi < files.length ? files[fi]!.name : '';
        fi++;
        const start = offset;
        offset += size;
        counter.next();
        yield {
          name,
          size,
          encrypted: isAes(folder),
          async *open() {
            if (!state || state.pos > start) {
              if (state && ++restarts > MAX_RESTARTS)
                throw zerr('ERR_7Z_CORRUPT', 'too many folder re-reads');
              await state?.it.return?.();
              const fs = folderStream(src, streams, folder);
              state = {
                it: fs.out[Symbol.asyncIterator](),
                pending: Buffer.alloc(0),
                pos: 0,
                counter: fs.counter,
              };
            }
            const st = state;
            const body = async function* (): AsyncGenerator<Buffer> {
              let left = size;
              while (left > 0) {
                if (st.pending.length === 0) {
                  const n = await st.it.next();
                  if (n.done) throw zerr('ERR_7Z_TRUNCATED', `${name}: folder ends ${left} bytes early`);
                  st.pending = n.value;
                }
                const skip = Math.min(st.pending.length, Math.max(0, start - st.pos));
                if (skip > 0) {
                  st.pending = st.pending.subarray(skip);
                  st.pos += skip;
                  continue;
                }
                const piece = st.pending.subarray(0, Math.min(left, st.pending.length));
                st.pending = st.pending.subarray(piece.length);
                st.pos += piece.length;
                left -= piece.length;
                yield piece;
              }
            };
            try {
              // Compressed bytes of the whole folder read so far: in a solid folder a file's share of the
              // input is not knowable, and this never overstates the ratio.
              yield* limitOutput('7z', body(), ctx, () => st.counter.bytes);
            } catch (e) {
              throw asUnpackError('7z', 'ERR_7Z_CORRUPT', e);
            }
          },
        };
      }
    }
  },
};
