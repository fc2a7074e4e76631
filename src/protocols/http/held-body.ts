/**
 * The bytes of a body held back until its verdict: in memory up to a limit, then in a temp file
 * (mode 0600, in the spool folder). Unlike the engine's Spool it computes no digest: the scanner
 * hashes what it scans, and a second SHA-256 over every held byte cost about 0.5 ms per MB.
 * `dispose()` removes the file; always call it.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Size of the pieces read back from the file. */
const READ_CHUNK = 256 * 1024;

export class HeldBody {
  private chunks: Buffer[] = [];
  private fh: FileHandle | null = null;
  private filePath: string | null = null;
  private total = 0;

  constructor(
    private readonly memoryLimit: number,
    private readonly dir = tmpdir(),
  ) {}

  get size(): number {
    return this.total;
  }

  /** The temp file, once the body outgrew memory; null while it is all in memory. */
  get path(): string | null {
    return this.filePath;
  }

  async write(chunk: Buffer): Promise<void> {
    this.total += chunk.length;
    if (!this.fh && this.total <= this.memoryLimit) {
      this.chunks.push(chunk);
      return;
    }
    if (!this.fh) {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.filePath = join(this.dir, `held-${process.pid}-${randomBytes(8).toString('hex')}`);
      this.fh = await open(this.filePath, 'w+', 0o600);
      this.chunks.push(chunk);
      await this.fh.writev(this.chunks);
      this.chunks = [];
      return;
    }
    await this.fh.write(chunk);
  }

  /** The whole body as one buffer, when it is in memory. */
  buffer(): Buffer | null {
    if (this.fh) return null;
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
  }

  /** Bytes [start, end) in order. */
  async *read(start = 0, end = this.total): AsyncGenerator<Buffer> {
    if (end <= start) return;
    if (!this.fh) {
      let p = 0;
      for (const c of this.chunks) {
        const from = Math.max(start, p);
        const to = Math.min(end, p + c.length);
        if (from < to) yield from === p && to === p + c.length ? c : c.subarray(from - p, to - p);
        p += c.length;
        if (p >= end) return;
      }
      return;
    }
    for (let p = start; p < end; ) {
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, end - p));
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, p);
      if (bytesRead === 0) throw new Error('held body file shorter than written');
      p += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  }

  async dispose(): Promise<void> {
    const fh = this.fh;
    const path = this.filePath;
    this.fh = null;
    this.filePath = null;
    this.chunks = [];
    await fh?.close().catch(() => {});
    if (path) await rm(path, { force: true });
  }
}
