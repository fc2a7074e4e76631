/**
 * OLE2 compound files (MS-CFB): Word/Excel/PowerPoint 97-2003, MSI, embedded objects. Every stream
 * is yielded; an `\x01Ole10Native` stream (an embedded OLE1 package) yields the packaged file.
 * Sector chains are followed through the FAT with a step budget, so a cyclic chain ends in an error.
 */
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { packagedFile } from './rtf.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const MAGIC = Buffer.from('d0cf11e0a1b11ae1', 'hex');
const END_OF_CHAIN = 0xfffffffe;
const FREE = 0xffffffff;

function corrupt(msg: string): UnpackError {
  return new UnpackError('ole2', 'ERR_OLE2_CORRUPT', msg);
}

class CompoundFile {
  private fat!: Uint32Array;
  private miniFat = new Uint32Array(0);
  private miniStream: Buffer = Buffer.alloc(0);
  readonly sectorSize: number;
  readonly cutoff: number;

  private constructor(
    private readonly src: ObjectSource,
    private readonly header: Buffer,
  ) {
    this.sectorSize = 1 << header.readUInt16LE(0x1e);
    this.cutoff = header.readUInt32LE(0x38);
    if (this.sectorSize !== 512 && this.sectorSize !== 4096) throw corrupt(`sector size ${this.sectorSize}`);
  }

  static async open(src: ObjectSource): Promise<CompoundFile> {
    const header = await src.read(0, 512);
    if (header.length < 512 || !header.subarray(0, 8).equals(MAGIC)) throw corrupt('not a compound file');
    const cf = new CompoundFile(src, header);
    await cf.loadFat();
    return cf;
  }

  private get sectorCount(): number {
    return Math.ceil(this.src.size / this.sectorSize);
  }

  private async sector(n: number): Promise<Buffer> {
    if (n >= this.sectorCount) throw corrupt(`sector ${n} past the end`);
    const b = await this.src.read((n + 1) * this.sectorSize, this.sectorSize);
    if (b.length < this.sectorSize)
      throw new UnpackError('ole2', 'ERR_OLE2_TRUNCATED', `sector ${n} cut short`);
    return b;
  }

  private async loadFat(): Promise<void> {
    const perSector = this.sectorSize / 4;
    const fatSectors: number[] = [];
    for (let i = 0; i < 109; i++) {
      const s = this.header.readUInt32LE(0x4c + i * 4);
      if (s < END_OF_CHAIN - 3) fatSectors.push(s);
    }
    let difat = this.header.readUInt32LE(0x44);
    for (let steps = 0; difat < END_OF_CHAIN - 3; steps++) {
      if (steps > this.sectorCount) throw corrupt('DIFAT chain loops');
      const b = await this.sector(difat);
      for (let i = 0; i < perSector - 1; i++) {
        const s = b.readUInt32LE(i * 4);
        if (s < END_OF_CHAIN - 3) fatSectors.push(s);
      }
      difat = b.readUInt32LE((perSector - 1) * 4);
    }
    if (fatSectors.length > this.sectorCount) throw corrupt('more FAT sectors than the file holds');
    this.fat = new Uint32Array(fatSectors.length * perSector);
    for (const [i, s] of fatSectors.entries()) {
      const b = await this.sector(s);
      for (let j = 0; j < perSector; j++) this.fat[i * perSector + j] = b.readUInt32LE(j * 4);
    }
  }

  /** The chain of sectors starting at `start`; throws on loops and out-of-range links. */
  chain(start: number, table: Uint32Array = this.fat): number[] {
    const out: number[] = [];
    for (let s = start; s !== END_OF_CHAIN && s !== FREE; s = table[s]!) {
      if (s >= table.length || out.length > table.length) throw corrupt('broken or cyclic sector chain');
      out.push(s);
    }
    return out;
  }

  async readChain(start: number, size: number, maxSize: number): Promise<Buffer> {
    if (size > maxSize) throw new UnpackLimitError('MaxFileSize', `ole2: stream of ${size} bytes`);
    const parts: Buffer[] = [];
    let got = 0;
    for (const s of this.chain(start)) {
      if (got >= size) break;
      const b = await this.sector(s);
      parts.push(b);
      got += b.length;
    }
    return Buffer.concat(parts).subarray(0, size);
  }

  async loadMini(rootStart: number, rootSize: number, maxSize: number): Promise<void> {
    this.miniStream = await this.readChain(rootStart, rootSize, maxSize);
    const first = this.header.readUInt32LE(0x3c);
    if (first >= END_OF_CHAIN - 3) return;
    const raw = await this.readChain(first, this.chain(first).length * this.sectorSize, maxSize);
    this.miniFat = new Uint32Array(raw.length / 4);
    for (let i = 0; i < this.miniFat.length; i++) this.miniFat[i] = raw.readUInt32LE(i * 4);
  }

  readMini(start: number, size: number): Buffer {
    const parts: Buffer[] = [];
    for (const s of this.chain(start, this.miniFat))
      parts.push(this.miniStream.subarray(s * 64, s * 64 + 64));
    return Buffer.concat(parts).subarray(0, size);
  }

  /** Directory entries; the directory chain is bounded by the FAT, itself bounded by the file size. */
  async directory(): Promise<{ name: string; type: number; start: number; size: number }[]> {
    const first = this.header.readUInt32LE(0x30);
    const raw = await this.readChain(
      first,
      this.chain(first).length * this.sectorSize,
      Number.MAX_SAFE_INTEGER,
    );
    const entries = [];
    for (let off = 0; off + 128 <= raw.length; off += 128) {
      const type = raw[off + 66]!;
      if (type === 0) continue;
      const nameLen = Math.min(64, raw.readUInt16LE(off + 64));
      const name = raw.subarray(off, off + Math.max(0, nameLen - 2)).toString('utf16le');
      entries.push({ name, type, start: raw.readUInt32LE(off + 116), size: raw.readUInt32LE(off + 120) });
    }
    return entries;
  }
}

export const ole2Unpacker: Unpacker = {
  type: 'ole2',
  detect: (head) => head.length >= 8 && head.subarray(0, 8).equals(MAGIC),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    try {
      yield* ole2Entries(source, ctx);
    } catch (e) {
      if (e instanceof UnpackError || e instanceof UnpackLimitError) throw e;
      // Offsets from a hostile directory that slipped past the checks above: still only a corrupt file.
      throw new UnpackError('ole2', 'ERR_OLE2_CORRUPT', (e as Error).message, { cause: e });
    }
  },
};

async function* ole2Entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
  {
    const cf = await CompoundFile.open(source);
    const dir = await cf.directory();
    const root = dir.find((d) => d.type === 5);
    if (root && root.size > 0) await cf.loadMini(root.start, root.size, ctx.maxFileSize);
    let count = 0;
    for (const d of dir) {
      if (d.type !== 2) continue;
      if (++count > ctx.maxFiles)
        throw new UnpackLimitError('MaxFiles', `ole2: more than ${ctx.maxFiles} streams`);
      if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
      const data =
        d.size < cf.cutoff
          ? cf.readMini(d.start, d.size)
          : await cf.readChain(d.start, d.size, ctx.maxFileSize);
      if (d.name === '\u0001Ole10Native' && data.length > 4) {
        const pkg = packagedFile(data, 4, data.length);
        if (pkg) {
          const file = data.subarray(pkg.start, pkg.end);
          yield {
            name: pkg.name,
            size: file.length,
            open: async function* () {
              yield file;
            },
          };
          continue;
        }
      }
      yield {
        name: d.name.replace(/[\u0000-\u001f]/g, ''),
        size: data.length,
        open: async function* () {
          yield data;
        },
      };
    }
  }
}
