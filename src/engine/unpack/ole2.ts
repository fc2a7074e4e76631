/**
 * OLE2 compound files (MS-CFB): Word/Excel/PowerPoint 97-2003, MSI, embedded objects.
 *
 * Every stream is yielded under its storage path (e.g. `Macros/VBA/Module1`), read in place
 * through a ChainSource so no stream is copied whole into memory. On top of the raw streams:
 *  - `\x01Ole10Native` (an embedded OLE1 object): the packaged file itself (what users double-click);
 *  - VBA projects: each module's decompressed source, as `…/Module1.vba` (MS-OVBA), since macro
 *    signatures match source text;
 *  - "PowerPoint Document": each embedded object (ExOleObjStg), inflated when compressed.
 *
 * Hostile input: sector chains are followed with a visited bitmap, so a cyclic FAT, miniFAT or
 * DIFAT ends the chain instead of looping; the directory tree is walked with a visited set and a
 * size cap. A damaged chain yields what it reaches rather than failing the whole file.
 */
import { constants, createInflate } from 'node:zlib';
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { ChainSource } from './chainsource.js';
import { checkAbort, EntryCounter, limitOutput } from './limits.js';
import { packagedFile } from './ole1.js';
import { findPptObjects } from './ppt.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';
import { decompressAll, MAX_DIR_BYTES, parseDirStream, VbaDecompressor } from './vba.js';
import { throughZlib } from './zlibstream.js';

const MAGIC = Buffer.from('d0cf11e0a1b11ae1', 'hex');
/** Values at or above this are markers (DIFSECT, FATSECT, ENDOFCHAIN, FREESECT), never sector numbers. */
const MAX_REGSECT = 0xfffffffa;
const NOSTREAM = 0xffffffff;
/** Directory entries read at most (128 bytes each); real files have tens to a few thousand. */
const MAX_DIR_ENTRIES = 65536;
const MINI_SECTOR = 64;

const TYPE_STORAGE = 1;
const TYPE_STREAM = 2;
const TYPE_ROOT = 5;

function corrupt(msg: string): UnpackError {
  return new UnpackError('ole2', 'ERR_OLE2_CORRUPT', msg);
}

interface DirEntry {
  name: string;
  type: number;
  left: number;
  right: number;
  child: number;
  start: number;
  size: number;
}

export interface Ole2Stream {
  /** Storage path from the root, '/'-separated, control characters removed. */
  path: string;
  /** The raw directory name (keeps e.g. the \x01 of \x01Ole10Native). */
  name: string;
  /** Path of the storage holding it ('' for the root). */
  parent: string;
  data: ObjectSource;
}

export class CompoundFile {
  private fat = new Uint32Array(0);
  private miniFat = new Uint32Array(0);
  private miniStream: ObjectSource | null = null;
  readonly sectorSize: number;
  readonly cutoff: number;

  private constructor(
    private readonly src: ObjectSource,
    private readonly header: Buffer,
  ) {
    const shift = header.readUInt16LE(0x1e);
    if (shift !== 9 && shift !== 12) throw corrupt(`sector shift ${shift}`);
    this.sectorSize = 1 << shift;
    this.cutoff = header.readUInt32LE(0x38);
  }

  static async open(src: ObjectSource, signal: AbortSignal): Promise<CompoundFile> {
    const header = await src.read(0, 512);
    if (header.length < 512 || !header.subarray(0, 8).equals(MAGIC)) throw corrupt('not a compound file');
    const cf = new CompoundFile(src, header);
    await cf.loadFat(signal);
    return cf;
  }

  /** Sectors that exist in the file (sector n is at (n + 1) × sectorSize). */
  private get sectorCount(): number {
    return Math.max(0, Math.ceil(this.src.size / this.sectorSize) - 1);
  }

  private readonly sectorOffset = (n: number): number => (n + 1) * this.sectorSize;

  private async loadFat(signal: AbortSignal): Promise<void> {
    const perSector = this.sectorSize / 4;
    const fatSectors: number[] = [];
    const addFatSector = (s: number) => {
      if (s < this.sectorCount && fatSectors.length < this.sectorCount) fatSectors.push(s);
    };
    for (let i = 0; i < 109; i++) addFatSector(this.header.readUInt32LE(0x4c + i * 4));
    // DIFAT sectors continue the list; a visited set ends a cyclic DIFAT chain.
    const seen = new Set<number>();
    for (let d = this.header.readUInt32LE(0x44); d < this.sectorCount && !seen.has(d); ) {
      if (signal.aborted) throw new UnpackLimitError('MaxScanTime', 'unpacking aborted');
      seen.add(d);
      const b = await this.src.read(this.sectorOffset(d), this.sectorSize);
      if (b.length < this.sectorSize) break;
      for (let i = 0; i < perSector - 1; i++) addFatSector(b.readUInt32LE(i * 4));
      d = b.readUInt32LE((perSector - 1) * 4);
    }
    // The FAT covers at most the sectors the file holds: 4 bytes per sector, bounded by the file size.
    this.fat = new Uint32Array(Math.min(fatSectors.length * perSector, this.sectorCount)).fill(NOSTREAM);
    for (const [i, s] of fatSectors.entries()) {
      if (i * perSector >= this.fat.length) break;
      const b = await this.src.read(this.sectorOffset(s), this.sectorSize);
      for (let j = 0; j < perSector && i * perSector + j < this.fat.length && (j + 1) * 4 <= b.length; j++)
        this.fat[i * perSector + j] = b.readUInt32LE(j * 4);
    }
  }

  /** Visit stamps per table (one generation per chain walk), so no walk allocates a bitmap. */
  private readonly stamps = new Map<Uint32Array, Uint32Array>();
  private generation = 0;
  /** Sectors walked over all chains; real files visit each sector about once. */
  private walked = 0;

  /**
   * The chain starting at `start`, ended by a marker, an out-of-range link, or a sector seen before
   * in this chain (a cycle). Chains of a hostile file may all share one long run of sectors, so the
   * total walked is capped at a few times the FAT's size: beyond that the file is corrupt.
   */
  chain(start: number, table: Uint32Array, maxUnits = table.length): number[] {
    let stamp = this.stamps.get(table);
    if (!stamp) {
      stamp = new Uint32Array(table.length);
      this.stamps.set(table, stamp);
    }
    const gen = ++this.generation;
    const out: number[] = [];
    for (
      let s = start;
      s < table.length && s < MAX_REGSECT && stamp[s] !== gen && out.length < maxUnits;
      s = table[s]!
    ) {
      stamp[s] = gen;
      out.push(s);
    }
    this.walked += out.length;
    if (this.walked > 4 * (this.fat.length + this.miniFat.length) + 4096)
      throw corrupt('sector chains overlap far beyond the file size');
    return out;
  }

  /** A stream's bytes as a source: in the mini stream when smaller than the cutoff (MS-CFB 2.6.3). */
  async streamSource(start: number, size: number, isRoot = false): Promise<ObjectSource> {
    if (!isRoot && size < this.cutoff) {
      const mini = await this.mini();
      const units = this.chain(start, this.miniFat, Math.ceil(size / MINI_SECTOR));
      return new ChainSource(mini, units, MINI_SECTOR, (n) => n * MINI_SECTOR, size);
    }
    const units = this.chain(start, this.fat, Math.ceil(size / this.sectorSize));
    return new ChainSource(this.src, units, this.sectorSize, this.sectorOffset, size);
  }

  private rootEntry: DirEntry | null = null;

  private async mini(): Promise<ObjectSource> {
    if (this.miniStream) return this.miniStream;
    const root = this.rootEntry;
    this.miniStream = root ? await this.streamSource(root.start, root.size, true) : emptySource();
    const first = this.header.readUInt32LE(0x3c);
    const sectors = this.chain(first, this.fat);
    // The miniFAT has one entry per 64-byte mini sector; it cannot usefully be larger than the mini stream.
    const entries = Math.min(
      (sectors.length * this.sectorSize) / 4,
      Math.ceil(this.miniStream.size / MINI_SECTOR),
    );
    const raw = await new ChainSource(
      this.src,
      sectors,
      this.sectorSize,
      this.sectorOffset,
      entries * 4,
    ).read(0, entries * 4);
    this.miniFat = new Uint32Array(Math.floor(raw.length / 4));
    for (let i = 0; i < this.miniFat.length; i++) this.miniFat[i] = raw.readUInt32LE(i * 4);
    return this.miniStream;
  }

  /** Directory entries in index order (MS-CFB 2.6.1). */
  private async directory(): Promise<DirEntry[]> {
    const first = this.header.readUInt32LE(0x30);
    const sectors = this.chain(first, this.fat, Math.ceil((MAX_DIR_ENTRIES * 128) / this.sectorSize));
    const dir = new ChainSource(
      this.src,
      sectors,
      this.sectorSize,
      this.sectorOffset,
      sectors.length * this.sectorSize,
    );
    const entries: DirEntry[] = [];
    for await (const chunk of dir.stream(0, dir.size, 64 * 128)) {
      for (let off = 0; off + 128 <= chunk.length; off += 128) {
        const e = chunk.subarray(off, off + 128);
        const nameLen = Math.min(64, e.readUInt16LE(64));
        entries.push({
          name: e.subarray(0, Math.max(0, nameLen - 2)).toString('utf16le'),
          type: e[66]!,
          left: e.readUInt32LE(68),
          right: e.readUInt32LE(72),
          child: e.readUInt32LE(76),
          start: e.readUInt32LE(116),
          size: e.readUInt32LE(120), // the high half is only meaningful for 4 KiB sectors and > 4 GiB streams
        });
      }
    }
    return entries;
  }

  /**
   * Every stream with its storage path, found by walking the red-black trees of each storage from the
   * root (MS-CFB 2.6.4). Each entry is visited at most once whatever the links say.
   */
  async streams(signal: AbortSignal): Promise<Ole2Stream[]> {
    const dir = await this.directory();
    const root = dir[0];
    if (!root || root.type !== TYPE_ROOT) throw corrupt('no root directory entry');
    this.rootEntry = root;
    const out: { entry: DirEntry; path: string; parent: string }[] = [];
    const seen = new Uint8Array(dir.length);
    seen[0] = 1;
    const todo: { index: number; parent: string }[] = [{ index: root.child, parent: '' }];
    while (todo.length) {
      if (signal.aborted) throw new UnpackLimitError('MaxScanTime', 'unpacking aborted');
      const { index, parent } = todo.pop()!;
      if (index >= dir.length || seen[index]) continue;
      seen[index] = 1;
      const e = dir[index]!;
      const path = joinPath(parent, cleanName(e.name));
      todo.push({ index: e.left, parent }, { index: e.right, parent });
      if (e.type === TYPE_STORAGE) todo.push({ index: e.child, parent: path });
      else if (e.type === TYPE_STREAM) out.push({ entry: e, path, parent });
    }
    // File order is the directory's; keep it stable (parents before their streams is not needed).
    out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const streams: Ole2Stream[] = [];
    for (const s of out)
      streams.push({
        path: s.path,
        name: s.entry.name,
        parent: s.parent,
        data: await this.streamSource(s.entry.start, s.entry.size),
      });
    return streams;
  }
}

function cleanName(name: string): string {
  return name.replace(/[\u0000-\u001f/]/g, '') || '_';
}

function joinPath(parent: string, name: string): string {
  return parent ? `${parent}/${name}` : name;
}

function emptySource(): ObjectSource {
  return {
    size: 0,
    read: async () => Buffer.alloc(0),
    stream: async function* () {},
  };
}

/** The packaged file inside an `\x01Ole10Native` stream (uint32 size, then OLE1 Package native data). */
async function ole10Native(s: Ole2Stream): Promise<{ name: string; start: number; end: number } | null> {
  if (s.data.size <= 4) return null;
  const head = await s.data.read(0, Math.min(s.data.size, 16 * 1024));
  return packagedFile(head, 4, s.data.size);
}

async function* vbaSource(data: ObjectSource, offset: number, ctx: UnpackContext): AsyncGenerator<Buffer> {
  const d = new VbaDecompressor();
  for await (const chunk of data.stream(offset)) {
    checkAbort(ctx);
    yield* d.write(chunk);
  }
  yield* d.end();
}

async function* inflateObject(data: ObjectSource, start: number, end: number): AsyncGenerator<Buffer> {
  try {
    yield* throughZlib(
      'ole2',
      'ERR_OLE2_ZLIB',
      data.stream(start, end, 16 * 1024),
      createInflate({ finishFlush: constants.Z_SYNC_FLUSH }),
    );
  } catch (e) {
    // A damaged object ends early; its bytes recovered so far are still scanned.
    if (!(e instanceof UnpackError)) throw e;
  }
}

async function* ole2Entries(source: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
  const cf = await CompoundFile.open(source, ctx.signal);
  const streams = await cf.streams(ctx.signal);
  const counter = new EntryCounter('ole2', ctx);
  const byPath = new Map(streams.map((s) => [s.path.toLowerCase(), s]));

  for (const s of streams) {
    counter.next();
    const data = s.data;
    // Stored bytes: maxFileSize is enforced as the entry is read, after the earlier entries were scanned.
    const stored = (start: number, end: number) =>
      limitOutput('ole2', data.stream(start, end), ctx, Math.max(1, end - start));

    if (s.name === '\u0001Ole10Native') {
      const pkg = await ole10Native(s);
      if (pkg) {
        yield { name: pkg.name, size: pkg.end - pkg.start, open: () => stored(pkg.start, pkg.end) };
        continue;
      }
    }
    yield { name: s.path, size: data.size, open: () => stored(0, data.size) };

    if (s.name.toLowerCase() === 'dir' && byPath.has(joinPath(s.parent, '_vba_project').toLowerCase())) {
      const raw = await data.read(0, Math.min(data.size, MAX_DIR_BYTES));
      for (const m of parseDirStream(decompressAll(raw, MAX_DIR_BYTES))) {
        const mod = byPath.get(joinPath(s.parent, cleanName(m.stream)).toLowerCase());
        if (!mod || m.offset >= mod.data.size) continue;
        counter.next();
        yield {
          name: `${mod.path}.vba`,
          open: () => limitOutput('ole2', vbaSource(mod.data, m.offset, ctx), ctx, mod.data.size - m.offset),
        };
      }
    }

    if (s.name === 'PowerPoint Document') {
      for (const o of await findPptObjects(data, ctx.maxFiles, ctx.signal)) {
        counter.next();
        yield {
          name: `${s.path}/ExOleObjStg@${o.start}`,
          open: () =>
            limitOutput(
              'ole2',
              o.compressed ? inflateObject(data, o.start, o.end) : data.stream(o.start, o.end, 16 * 1024),
              ctx,
              o.end - o.start,
            ),
        };
      }
    }
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
