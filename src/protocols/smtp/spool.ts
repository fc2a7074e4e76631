/**
 * Where a message waits while it is scanned: memory up to a threshold, then a temp file in
 * dataDir/spool (mode 0600, removed on dispose). Unlike the engine's Spool it computes no digest:
 * the scanner hashes what it scans for its verdict cache, and a second SHA-256 pass over every
 * message was a measurable share of the relay's CPU (bench/smtp.ts).
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BufferSource, FileSource, type ObjectSource } from '../../engine/source.js';

export class MessageSpool {
  private chunks: Buffer[] = [];
  private memBytes = 0;
  private fh: FileHandle | null = null;
  private path: string | null = null;
  private source: ObjectSource | null = null;
  size = 0;

  constructor(
    private readonly dir: string,
    private readonly memoryLimit: number,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    this.size += chunk.length;
    if (!this.fh && this.memBytes + chunk.length <= this.memoryLimit) {
      this.chunks.push(chunk);
      this.memBytes += chunk.length;
      return;
    }
    if (!this.fh) {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.path = join(this.dir, `smtp-${process.pid}-${randomBytes(8).toString('hex')}`);
      this.fh = await open(this.path, 'w+', 0o600);
      // Gathered writes: one syscall for what was held in memory.
      if (this.chunks.length) await this.fh.writev(this.chunks);
      this.chunks = [];
      this.memBytes = 0;
    }
    await this.fh.write(chunk);
  }

  async finish(): Promise<ObjectSource> {
    if (this.fh) {
      await this.fh.close();
      this.fh = null;
      this.source = await FileSource.open(this.path!);
    } else {
      this.source = new BufferSource(
        this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.memBytes),
      );
      this.chunks = [];
    }
    return this.source;
  }

  async dispose(): Promise<void> {
    if (this.source instanceof FileSource) await this.source.close().catch(() => {});
    if (this.fh) await this.fh.close().catch(() => {});
    if (this.path) await rm(this.path, { force: true });
    this.source = null;
    this.chunks = [];
  }
}
