/**
 * Random-access views of an object being scanned. Container parsers need random access (a zip's
 * central directory is at the end) while protocols hand us streams, so every object is first written
 * to a spool (memory up to a threshold, then a temp file) and read back through an ObjectSource.
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ObjectSource {
  readonly size: number;
  /** Reads up to `length` bytes at `position`; shorter only at the end of the object. */
  read(position: number, length: number): Promise<Buffer>;
  /** Streams [start, end) in chunks of at most `chunkSize` bytes (default 64 KiB). */
  stream(start?: number, end?: number, chunkSize?: number): AsyncIterable<Buffer>;
}

export const DEFAULT_CHUNK = 64 * 1024;

export class BufferSource implements ObjectSource {
  constructor(private readonly buf: Buffer) {}
  /** The bytes themselves (no copy). */
  get buffer(): Buffer {
    return this.buf;
  }
  get size(): number {
    return this.buf.length;
  }
  async read(position: number, length: number): Promise<Buffer> {
    return this.buf.subarray(position, Math.min(this.buf.length, position + length));
  }
  async *stream(start = 0, end = this.buf.length, chunkSize = DEFAULT_CHUNK): AsyncIterable<Buffer> {
    for (let p = start; p < end; p += chunkSize) yield this.buf.subarray(p, Math.min(end, p + chunkSize));
  }
}

export class FileSource implements ObjectSource {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    readonly path: string,
  ) {}

  static async open(path: string): Promise<FileSource> {
    const fh = await open(path, 'r');
    const st = await fh.stat();
    return new FileSource(fh, st.size, path);
  }

  async read(position: number, length: number): Promise<Buffer> {
    const len = Math.max(0, Math.min(length, this.size - position));
    const buf = Buffer.allocUnsafe(len);
    let off = 0;
    while (off < len) {
      const { bytesRead } = await this.fh.read(buf, off, len - off, position + off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return off === len ? buf : buf.subarray(0, off);
  }

  async *stream(start = 0, end = this.size, chunkSize = DEFAULT_CHUNK): AsyncIterable<Buffer> {
    if (end <= start) return;
    yield* createReadStream(this.path, { start, end: end - 1, highWaterMark: chunkSize });
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * Scan inputs a Spool handed out (its Buffer, or a `{ path }` object naming its temp file), each with
 * the SHA-256 the Spool computed while the bytes were written. Keyed by the object itself, so only
 * an input that came from `Spool.scanInput()` carries a digest: a caller cannot attach one to other
 * bytes and so cannot put a verdict into the cache under the wrong content.
 */
const spooledDigests = new WeakMap<object, string>();

/** The digest of a scan input that `Spool.scanInput()` produced, else undefined. */
export function spooledDigest(input: object): string | undefined {
  return spooledDigests.get(input);
}

export interface SpoolOptions {
  /** Bytes kept in memory before the spool moves to a temp file. */
  memoryLimit?: number;
  /** Folder for temp files (DESIGN: dataDir/spool); default the OS temp folder. */
  dir?: string;
}

/**
 * `digest: false`: no SHA-256 for an object nobody looks up by content (an entry of a container being
 * unpacked), which saves a hashing pass over every unpacked byte; `finish()` then gives `sha256: null`
 * and the Spool hands out no scan input.
 */
export type SpoolDigest<D extends boolean> = D extends true ? string : null;

/** Bytes a spilled Spool gathers before writing them out. */
const WRITE_BATCH = 256 * 1024;
/** Chunks per write, under Linux's IOV_MAX (1024). */
const MAX_IOVECS = 1024;

/**
 * Collects an object's bytes, hashing them with SHA-256 on the way (the verdict-cache key), and
 * hands back an ObjectSource. `dispose()` removes the temp file; always call it.
 */
export class Spool<D extends boolean = true> {
  private chunks: Buffer[] = [];
  private memBytes = 0;
  private fh: FileHandle | null = null;
  private filePath: string | null = null;
  private readonly hash: Hash | null;
  private total = 0;
  private source: ObjectSource | null = null;
  private sha256: string | null = null;
  private readonly memoryLimit: number;
  private readonly dir: string;

  constructor(options: SpoolOptions & { digest?: D } = {}) {
    this.memoryLimit = options.memoryLimit ?? 16 * 1024 * 1024;
    this.dir = options.dir ?? tmpdir();
    this.hash = options.digest === false ? null : createHash('sha256');
  }

  get size(): number {
    return this.total;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.source) throw new Error('spool already finished');
    this.hash?.update(chunk);
    this.total += chunk.length;
    if (!this.fh && this.memBytes + chunk.length <= this.memoryLimit) {
      this.chunks.push(chunk);
      this.memBytes += chunk.length;
      return;
    }
    if (!this.fh) {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.filePath = join(this.dir, `spool-${process.pid}-${randomBytes(8).toString('hex')}`);
      this.fh = await open(this.filePath, 'w+', 0o600);
    }
    // Past the limit, bytes go to the file in batches (never more than memoryLimit held): one write
    // per arriving chunk (a 16 KiB TLS record) cost a thread-pool round trip each, ~0.6 ms of the
    // event loop per MB spilled.
    this.chunks.push(chunk);
    this.memBytes += chunk.length;
    if (this.memBytes >= Math.min(WRITE_BATCH, this.memoryLimit) || this.chunks.length >= MAX_IOVECS)
      await this.flush();
  }

  /** Writes the chunks held in memory to the temp file, in one call. */
  private async flush(): Promise<void> {
    const chunks = this.chunks;
    this.chunks = [];
    this.memBytes = 0;
    if (chunks.length) await this.fh!.writev(chunks);
  }

  /**
   * Ends writing; returns the source and the SHA-256 of everything written (null without a digest).
   * Called again, it returns the same.
   */
  async finish(): Promise<{ source: ObjectSource; sha256: SpoolDigest<D> }> {
    if (this.source) return { source: this.source, sha256: this.sha256 as SpoolDigest<D> };
    const sha256 = this.hash ? this.hash.digest('hex') : null;
    this.sha256 = sha256;
    if (this.fh) {
      await this.flush();
      await this.fh.close();
      this.fh = null;
      this.source = await FileSource.open(this.filePath!);
    } else {
      this.source = new BufferSource(this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks));
      this.chunks = [];
    }
    return { source: this.source, sha256: sha256 as SpoolDigest<D> };
  }

  /**
   * After finish(): the object as a scan input (the Buffer in memory, or the temp file's path) that
   * the builtin scanner recognises, so it skips hashing the bytes a second time. The Spool must not
   * be disposed before the scan ends.
   */
  scanInput(): Buffer | { path: string } {
    const source = this.source;
    if (!source) throw new Error('spool not finished');
    if (!this.sha256) throw new Error('spool made without a digest has no scan input');
    const input = source instanceof FileSource ? { path: source.path } : (source as BufferSource).buffer;
    spooledDigests.set(input, this.sha256);
    return input;
  }

  async dispose(): Promise<void> {
    if (this.source instanceof FileSource) await this.source.close().catch(() => {});
    if (this.fh) await this.fh.close().catch(() => {});
    if (this.filePath) await rm(this.filePath, { force: true });
    this.source = null;
    this.chunks = [];
  }
}
