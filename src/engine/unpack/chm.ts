/**
 * Microsoft Compiled HTML Help (.chm, "ITSF"): a directory of PMGL chunks lists every file as
 * (content section, offset, length). Section 0 is stored bytes; section 1 ("MSCompressed") is one
 * LZX stream, described by ::DataSpace/Storage/MSCompressed/ControlData (window size and reset
 * interval) and a ResetTable of compressed offsets at each reset point. Layout as documented by
 * the chmlib/libmspack authors (Pabs' "Microsoft's HTML Help (.chm) format"); ClamAV's chmunpack.c
 * extracts the same files.
 *
 * Files are yielded in section-1 offset order so one LZX decoder runs forward through the stream;
 * a file that starts before the decoder's position (overlapping entries, only in crafted files)
 * restarts it from the nearest reset point at or before its offset, as libmspack's chmd does.
 */
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { asUnpackError, checkAbort, EntryCounter, limitOutput } from './limits.js';
import { FRAME, LOOKAHEAD, LzxDecoder } from './lzx.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const CONTENT = '::DataSpace/Storage/MSCompressed/Content';
const CONTROL = '::DataSpace/Storage/MSCompressed/ControlData';
const RESET_TABLE =
  '::DataSpace/Storage/MSCompressed/Transform/{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable';
/** Directory chunks read at most (4 KiB each in practice). */
const MAX_CHUNKS = 65536;

function corrupt(msg: string): UnpackError {
  return new UnpackError('chm', 'ERR_CHM_CORRUPT', msg);
}

interface ChmFile {
  name: string;
  section: number;
  offset: number;
  length: number;
}

/** ENCINT: 7 bits per byte, most significant first, high bit set on all but the last byte. */
function encint(b: Buffer, pos: number, end: number): [number, number] {
  let v = 0;
  for (let i = 0; i < 9 && pos < end; i++) {
    const c = b[pos++]!;
    v = v * 128 + (c & 0x7f);
    if (!(c & 0x80)) return [v, pos];
  }
  throw corrupt('bad ENCINT');
}

function u64(b: Buffer, pos: number): number {
  const v = b.readBigUInt64LE(pos);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('64-bit value out of range');
  return Number(v);
}

async function readDirectory(
  source: ObjectSource,
  ctx: UnpackContext,
): Promise<{ files: ChmFile[]; dataOffset: number }> {
  const h = await source.read(0, 0x60);
  if (h.length < 0x58 || h.toString('latin1', 0, 4) !== 'ITSF') throw corrupt('no ITSF header');
  const version = h.readUInt32LE(4);
  const dirOffset = u64(h, 0x48);
  const dirLength = u64(h, 0x50);
  const dataOffset = version >= 3 && h.length >= 0x60 ? u64(h, 0x58) : dirOffset + dirLength;
  const itsp = await source.read(dirOffset, 0x54);
  if (itsp.length < 0x54 || itsp.toString('latin1', 0, 4) !== 'ITSP')
    throw corrupt('no ITSP directory header');
  const headerLen = itsp.readUInt32LE(8);
  const chunkSize = itsp.readUInt32LE(0x10);
  const numChunks = itsp.readUInt32LE(0x2c);
  if (chunkSize < 0x20 || chunkSize > 1 << 20) throw corrupt(`directory chunk size ${chunkSize}`);
  const files: ChmFile[] = [];
  const counter = new EntryCounter('chm', ctx);
  for (let c = 0; c < Math.min(numChunks, MAX_CHUNKS); c++) {
    checkAbort(ctx);
    const chunk = await source.read(dirOffset + headerLen + c * chunkSize, chunkSize);
    if (chunk.length < chunkSize) break;
    if (chunk.toString('latin1', 0, 4) !== 'PMGL') continue; // PMGI index chunks only speed up lookups
    const end = chunkSize - Math.min(chunkSize - 0x14, chunk.readUInt32LE(4));
    let pos = 0x14;
    while (pos < end) {
      let nameLen: number;
      [nameLen, pos] = encint(chunk, pos, end);
      if (pos + nameLen > end) throw corrupt('directory entry runs past its chunk');
      const name = chunk.toString('utf8', pos, pos + nameLen);
      pos += nameLen;
      let section: number;
      let offset: number;
      let length: number;
      [section, pos] = encint(chunk, pos, end);
      [offset, pos] = encint(chunk, pos, end);
      [length, pos] = encint(chunk, pos, end);
      if (length === 0 || name.endsWith('/')) continue;
      counter.next();
      files.push({ name, section, offset, length });
    }
  }
  return { files, dataOffset };
}

interface Section1 {
  start: number;
  end: number;
  windowBits: number;
  resetInterval: number;
  length: number;
  resetOffsets: number[];
}

async function section1(
  source: ObjectSource,
  files: ChmFile[],
  dataOffset: number,
): Promise<Section1 | null> {
  const find = (n: string) => files.find((f) => f.section === 0 && f.name === n);
  const content = find(CONTENT);
  const control = find(CONTROL);
  if (!content || !control) return null;
  const c = await source.read(dataOffset + control.offset, Math.min(control.length, 64));
  if (c.length < 24 || c.toString('latin1', 4, 8) !== 'LZXC') throw corrupt('bad LZXC control data');
  let resetInterval = c.readUInt32LE(12);
  let windowSize = c.readUInt32LE(16);
  if (c.readUInt32LE(8) === 2) {
    resetInterval *= FRAME;
    windowSize *= FRAME;
  }
  const windowBits = Math.log2(windowSize);
  if (!Number.isInteger(windowBits) || windowBits < 15 || windowBits > 21)
    throw corrupt(`LZX window ${windowSize}`);
  if (resetInterval % FRAME !== 0) throw corrupt(`LZX reset interval ${resetInterval}`);
  const start = dataOffset + content.offset;
  const end = Math.min(source.size, start + content.length);
  // Output length and reset points come from the reset table; without one, decode as far as files reach.
  let length = files.reduce((m, f) => (f.section === 1 ? Math.max(m, f.offset + f.length) : m), 0);
  const resetOffsets: number[] = [];
  const rt = find(RESET_TABLE);
  if (rt && rt.length >= 0x28) {
    const t = await source.read(dataOffset + rt.offset, Math.min(rt.length, 0x28 + 8 * 65536));
    if (t.length < 0x28) throw corrupt('reset table cut short');
    const count = t.readUInt32LE(4);
    const tableAt = t.readUInt32LE(12);
    length = u64(t, 0x10);
    for (let i = 0; i < count && tableAt + 8 * i + 8 <= t.length; i++)
      resetOffsets.push(u64(t, tableAt + 8 * i));
  }
  return { start, end, windowBits, resetInterval: resetInterval / FRAME, length, resetOffsets };
}

/** A forward-only view of the decompressed section 1, restartable at reset points. */
class Section1Reader {
  private decoder: LzxDecoder | null = null;
  private input: AsyncIterator<Buffer> | null = null;
  private inputDone = false;
  private pending: Buffer = Buffer.alloc(0);
  /** Decompressed offset of pending[0]. */
  private pos = 0;
  private restarts = 0;

  constructor(
    private readonly source: ObjectSource,
    private readonly s: Section1,
    private readonly ctx: UnpackContext,
  ) {}

  private async restart(offset: number): Promise<void> {
    if (++this.restarts > 64) throw corrupt('too many overlapping files');
    await this.input?.return?.();
    const interval = this.s.resetInterval;
    let k = interval ? Math.floor(offset / FRAME / interval) : 0;
    if (k >= this.s.resetOffsets.length) k = this.s.resetOffsets.length - 1;
    if (k < 0 || !interval) k = 0;
    const compressed = k > 0 ? this.s.resetOffsets[k]! : 0;
    const frame = k * interval;
    this.decoder = new LzxDecoder(this.s.windowBits, interval, this.s.length, frame);
    this.input = this.source.stream(this.s.start + compressed, this.s.end)[Symbol.asyncIterator]();
    this.inputDone = false;
    this.pending = Buffer.alloc(0);
    this.pos = frame * FRAME;
  }

  /** Yields decompressed bytes [from, to). */
  async *range(from: number, to: number): AsyncGenerator<Buffer> {
    if (!this.decoder || from < this.pos) await this.restart(from);
    const d = this.decoder!;
    while (this.pos < to) {
      checkAbort(this.ctx);
      if (this.pending.length === 0) {
        if (d.done) return; // the stream is shorter than the directory claims
        while (!this.inputDone && d.buffered < LOOKAHEAD) {
          const r = await this.input!.next();
          if (r.done) {
            this.inputDone = true;
            d.endInput();
          } else d.feed(r.value);
        }
        this.pending = d.decodeFrame();
      }
      const end = this.pos + this.pending.length;
      if (end > from) {
        const lo = Math.max(from, this.pos) - this.pos;
        const hi = Math.min(to, end) - this.pos;
        yield this.pending.subarray(lo, hi);
        if (hi < this.pending.length) {
          this.pending = this.pending.subarray(hi);
          this.pos += hi;
          continue;
        }
      }
      this.pos = end;
      this.pending = Buffer.alloc(0);
    }
  }
}

/** Any failure inside the decoder on hostile data is a corrupt entry, not a crash. */
async function* guard(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  try {
    yield* chunks;
  } catch (e) {
    throw asUnpackError('chm', 'ERR_CHM_CORRUPT', e);
  }
}

export const chmUnpacker: Unpacker = {
  type: 'chm',
  detect: (head) => head.length >= 4 && head.toString('latin1', 0, 4) === 'ITSF',
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    try {
      yield* chmEntries(source, ctx);
    } catch (e) {
      if (e instanceof UnpackError || e instanceof UnpackLimitError) throw e;
      // An offset from a hostile header that slipped past the checks: still only a corrupt file.
      throw new UnpackError('chm', 'ERR_CHM_CORRUPT', (e as Error).message, { cause: e });
    }
  },
};

async function* chmEntries(source: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
  {
    const { files, dataOffset } = await readDirectory(source, ctx);
    const s1 = files.some((f) => f.section === 1) ? await section1(source, files, dataOffset) : null;
    const reader = s1 ? new Section1Reader(source, s1, ctx) : null;
    const visible = files.filter(
      (f) => !f.name.startsWith('::') && (f.section === 0 || (f.section === 1 && reader)),
    );
    visible.sort((a, b) => a.section - b.section || a.offset - b.offset);
    for (const f of visible) {
      const name = f.name.replace(/^\/+/, '');
      if (f.section === 0) {
        const start = dataOffset + f.offset;
        const end = Math.min(source.size, start + f.length);
        yield {
          name,
          size: f.length,
          open: () => limitOutput('chm', source.stream(start, end), ctx, Math.max(1, end - start)),
        };
      } else {
        yield {
          name,
          size: f.length,
          open: () =>
            limitOutput(
              'chm',
              guard(reader!.range(f.offset, f.offset + f.length)),
              ctx,
              Math.max(1, s1!.end - s1!.start),
            ),
        };
      }
    }
  }
}
