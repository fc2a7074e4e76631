/**
 * VBA macros in OLE2 files (MS-OVBA). Module source is stored compressed (§2.4.1) after a
 * p-code area; the `dir` stream (itself compressed) names each module's stream and the offset of
 * its compressed source (MODULEOFFSET, §2.3.4.2.3.2.5). Macro signatures match the source text,
 * so each module is yielded decompressed.
 *
 * The compression works on independent 4096-byte chunks whose copy tokens only refer back inside
 * the same chunk, so decompression streams with one chunk of state.
 */

/** Decompressed `dir` streams larger than this are not parsed (real ones are a few KiB). */
export const MAX_DIR_BYTES = 1024 * 1024;

const CHUNK = 4096;

/** Decompresses one CompressedChunk's data (header already read) into at most 4096 bytes. */
function decompressChunk(data: Buffer, compressed: boolean): Buffer {
  if (!compressed) return data.subarray(0, CHUNK);
  const out = Buffer.allocUnsafe(CHUNK);
  let o = 0;
  let i = 0;
  while (i < data.length && o < CHUNK) {
    const flags = data[i++]!;
    for (let bit = 0; bit < 8 && i < data.length && o < CHUNK; bit++) {
      if ((flags & (1 << bit)) === 0) {
        out[o++] = data[i++]!;
        continue;
      }
      if (i + 1 >= data.length) return out.subarray(0, o);
      const token = data.readUInt16LE(i);
      i += 2;
      // §2.4.1.3.19.1: the split between offset and length bits grows with the position in the chunk.
      let bitCount = 4;
      while (1 << bitCount < o) bitCount++;
      const lengthMask = 0xffff >> bitCount;
      const length = (token & lengthMask) + 3;
      const offset = (token >> (16 - bitCount)) + 1;
      if (offset > o) return out.subarray(0, o); // refers before the chunk: corrupt, keep what we have
      for (let k = 0; k < length && o < CHUNK; k++, o++) out[o] = out[o - offset]!;
    }
  }
  return out.subarray(0, o);
}

/**
 * Streaming decompressor for a CompressedContainer: feed compressed bytes, get source text back.
 * Stops (returns nothing more) at the first malformed chunk header, as Office does.
 */
export class VbaDecompressor {
  private buf: Buffer = Buffer.alloc(0);
  private started = false;
  private dead = false;

  write(chunk: Buffer): Buffer[] {
    if (this.dead) return [];
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    if (!this.started) {
      if (this.buf.length === 0) return out;
      if (this.buf[0] !== 0x01) {
        this.dead = true;
        return out;
      }
      this.started = true;
      this.buf = this.buf.subarray(1);
    }
    for (;;) {
      const piece = this.next(false);
      if (!piece) break;
      out.push(piece);
    }
    if (!this.dead) this.buf = Buffer.from(this.buf); // do not pin the caller's chunk
    return out;
  }

  /** The last chunk may be shorter than its header says when the stream was cut. */
  end(): Buffer[] {
    const last = this.dead || !this.started ? null : this.next(true);
    this.dead = true;
    return last ? [last] : [];
  }

  private next(final: boolean): Buffer | null {
    if (this.buf.length < 2) return null;
    const header = this.buf.readUInt16LE(0);
    // §2.4.1.1.5: signature bits 12-14 must be 0b011.
    if (((header >> 12) & 0x7) !== 0x3) {
      this.dead = true;
      return null;
    }
    const size = (header & 0x0fff) + 3;
    const compressed = (header & 0x8000) !== 0;
    if (this.buf.length < size && !final) return null;
    const data = this.buf.subarray(2, Math.min(size, this.buf.length));
    this.buf = this.buf.subarray(Math.min(size, this.buf.length));
    return decompressChunk(data, compressed);
  }
}

/** Decompresses a whole (small) container held in memory, up to `max` bytes of output. */
export function decompressAll(data: Buffer, max: number): Buffer {
  const d = new VbaDecompressor();
  const parts = [...d.write(data), ...d.end()];
  const all = Buffer.concat(parts);
  return all.subarray(0, max);
}

export interface VbaModule {
  /** Name of the module's stream in the VBA storage. */
  stream: string;
  /** Offset of the compressed source inside that stream. */
  offset: number;
}

/** Module streams and source offsets from a decompressed `dir` stream (§2.3.4.2). */
export function parseDirStream(dir: Buffer): VbaModule[] {
  const modules: VbaModule[] = [];
  let current: Partial<VbaModule> = {};
  let pos = 0;
  while (pos + 6 <= dir.length) {
    const id = dir.readUInt16LE(pos);
    // PROJECTVERSION's size field is a fixed Reserved value; its payload is 6 bytes (§2.3.4.2.1.11).
    const size = id === 0x0009 ? 6 : dir.readUInt32LE(pos + 2);
    const data = pos + 6;
    if (data + size > dir.length) break;
    if (id === 0x001a) current.stream = dir.subarray(data, data + size).toString('latin1');
    else if (id === 0x0031 && size >= 4) current.offset = dir.readUInt32LE(data);
    else if (id === 0x002b) {
      if (current.stream !== undefined && current.offset !== undefined)
        modules.push({ stream: current.stream, offset: current.offset });
      current = {};
    }
    pos = data + size;
  }
  return modules;
}
