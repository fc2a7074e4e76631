/**
 * Microsoft Cabinet ([MS-CAB] 2.1-2.5): CFHEADER, CFFOLDERs, CFFILEs, and per folder a chain of
 * CFDATA blocks holding one uncompressed stream that the folder's files are slices of.
 * Compression: none and MSZIP ([MS-MCI] 2: each block is "CK" + a deflate stream of at most 32 KiB
 * output whose history carries over from the previous block, so each block is inflated with the last
 * 32 KiB as a preset dictionary). Quantum and LZX folders are listed but open() throws ERR_CAB_METHOD.
 * Files continued from/to another cabinet (iFolder 0xFFFD-0xFFFF) cannot be read alone and are skipped.
 */
import { inflateRawSync } from 'node:zlib';
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { checkAbort, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const MAX_RESTARTS = 16;

function cerr(code: string, msg: string): UnpackError {
  return new UnpackError('cab', code, msg);
}

interface Folder {
  start: number;
  blocks: number;
  type: number;
}
interface CabFile {
  name: string;
  size: number;
  offset: number;
  folder: number;
}

async function cstring(src: ObjectSource, p: number): Promise<[string, number]> {
  const b = await src.read(p, 257);
  const z = b.indexOf(0);
  if (z < 0) throw cerr('ERR_CAB_CORRUPT', 'unterminated string');
  return [b.subarray(0, z).toString('latin1'), p + z + 1];
}

/** Decompresses one folder's blocks in order; `skip` + `take` carve a file out of the stream. */
class FolderReader {
  pos = 0; // uncompressed position of the next byte `blocks()` will produce
  consumed = 0;
  private history: Buffer = Buffer.alloc(0);
  private p: number;
  private n = 0;
  constructor(
    private readonly src: ObjectSource,
    private readonly f: Folder,
    private readonly dataReserve: number,
  ) {
    this.p = f.start;
  }
  /** Next block's uncompressed bytes, or null at the end of the folder. */
  async next(): Promise<Buffer | null> {
    if (this.n >= this.f.blocks) return null;
    this.n++;
    const h = await this.src.read(this.p, 8);
    if (h.length < 8) throw cerr('ERR_CAB_TRUNCATED', 'CFDATA header cut short');
    const cb = h.readUInt16LE(4);
    const ucb = h.readUInt16LE(6);
    const data = await this.src.read(this.p + 8 + this.dataReserve, cb);
    if (data.length < cb) throw cerr('ERR_CAB_TRUNCATED', 'CFDATA block cut short');
    this.p += 8 + this.dataReserve + cb;
    this.consumed += 8 + cb;
    let out: Buffer;
    if ((this.f.type & 0xf) === 0) out = data;
    else {
      if (data.length < 2 || data[0] !== 0x43 || data[1] !== 0x4b)
        throw cerr('ERR_CAB_CORRUPT', 'MSZIP block without CK');
      try {
        out = inflateRawSync(data.subarray(2), {
          ...(this.history.length ? { dictionary: this.history } : {}),
          maxOutputLength: 32768,
        });
      } catch (e) {
        throw cerr('ERR_CAB_CORRUPT', `MSZIP: ${(e as Error).message}`);
      }
      const h2 = this.history.length ? Buffer.concat([this.history, out]) : out;
      this.history = Buffer.from(h2.subarray(Math.max(0, h2.length - 32768)));
    }
    if (ucb !== 0 && out.length !== ucb && this.n < this.f.blocks) {
      throw cerr('ERR_CAB_CORRUPT', `block declares ${ucb} bytes, holds ${out.length}`);
    }
    this.pos += out.length;
    return out;
  }
}

export const cabUnpacker: Unpacker = {
  type: 'cab',
  detect(head: Buffer): boolean {
    return head.length >= 36 && head.readUInt32LE(0) === 0x4643534d && head[25] === 1 && head[24] === 3;
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const h = await src.read(0, 36);
    if (!cabUnpacker.detect(h, src.size)) throw cerr('ERR_CAB_CORRUPT', 'bad CFHEADER');
    const coffFiles = h.readUInt32LE(16);
    const nFolders = h.readUInt16LE(26);
    const nFiles = h.readUInt16LE(28);
    const flags = h.readUInt16LE(30);
    let p = 36;
    let folderReserve = 0;
    let dataReserve = 0;
    if (flags & 4) {
      const r = await src.read(36, 4);
      if (r.length < 4) throw cerr('ERR_CAB_TRUNCATED', 'reserve header cut short');
      folderReserve = r[2]!;
      dataReserve = r[3]!;
      p = 40 + r.readUInt16LE(0);
    }
    if (flags & 1) p = (await cstring(src, (await cstring(src, p))[1]))[1];
    if (flags & 2) p = (await cstring(src, (await cstring(src, p))[1]))[1];
    const folders: Folder[] = [];
    for (let i = 0; i < nFolders; i++) {
      const f = await src.read(p, 8);
      if (f.length < 8) throw cerr('ERR_CAB_TRUNCATED', 'CFFOLDER cut short');
      folders.push({ start: f.readUInt32LE(0), blocks: f.readUInt16LE(4), type: f.readUInt16LE(6) });
      p += 8 + folderReserve;
    }
    const files: CabFile[] = [];
    p = coffFiles;
    for (let i = 0; i < nFiles; i++) {
      checkAbort(ctx);
      const f = await src.read(p, 16);
      if (f.length < 16) throw cerr('ERR_CAB_TRUNCATED', 'CFFILE cut short');
      const [name, after] = await cstring(src, p + 16);
      p = after;
      const folder = f.readUInt16LE(8);
      if (folder >= 0xfffd) continue;
      if (folder >= folders.length) throw cerr('ERR_CAB_CORRUPT', `file ${name} names folder ${folder}`);
      files.push({ name, size: f.readUInt32LE(0), offset: f.readUInt32LE(4), folder });
    }
    // Folder order, then offset: one forward pass per folder in the usual case.
    files.sort((a, b) => a.folder - b.folder || a.offset - b.offset);
    const counter = new EntryCounter('cab', ctx);
    let reader: FolderReader | null = null;
    let readerFolder = -1;
    let pending: Buffer = Buffer.alloc(0); // produced but not yet consumed bytes, starting at reader.pos - pending.length
    let restarts = 0;
    for (const file of files) {
      counter.next();
      const folder = folders[file.folder]!;
      const method = folder.type & 0xf;
      yield {
        name: file.name,
        size: file.size,
        async *open() {
          if (method !== 0 && method !== 1)
            throw cerr('ERR_CAB_METHOD', `${file.name}: compression type ${method} not supported`);
          if (!reader || readerFolder !== file.folder || reader.pos - pending.length > file.offset) {
            if (reader && readerFolder === file.folder && ++restarts > MAX_RESTARTS) {
              throw cerr('ERR_CAB_CORRUPT', 'overlapping files force too many re-reads');
            }
            reader = new FolderReader(src, folder, dataReserve);
            readerFolder = file.folder;
            pending = Buffer.alloc(0);
          }
          const r: FolderReader = reader;
          const body = async function* (): AsyncGenerator<Buffer> {
            let at = r.pos - pending.length; // stream offset of pending[0]
            let left = file.size;
            for (;;) {
              if (pending.length === 0) {
                const b = await r.next();
                if (!b) break;
                pending = b;
              }
              if (at + pending.length <= file.offset) {
                at += pending.length;
                pending = Buffer.alloc(0);
                continue;
              }
              if (left === 0) break;
              const s = Math.max(0, file.offset - at);
              const piece = pending.subarray(s, s + Math.min(left, pending.length - s));
              at += s + piece.length;
              pending = pending.subarray(s + piece.length);
              left -= piece.length;
              yield piece;
            }
            if (left > 0) throw cerr('ERR_CAB_TRUNCATED', `${file.name}: folder ends ${left} bytes early`);
          };
          // Compressed bytes of the folder read so far (a file's own share of a block is not knowable).
          yield* limitOutput('cab', body(), ctx, () => r.consumed);
        },
      };
    }
  },
};
