/**
 * One INSTREAM body on its way to the scanner. Small bodies (up to `holdLimit`) are collected and
 * handed over whole at the zero-length chunk, as clamd does (it scans after the last chunk), which
 * spares a stream per scan; a body that grows past the limit becomes a stream the scanner reads
 * while the client is still sending, with backpressure, so memory stays bounded.
 */
import { PassThrough } from 'node:stream';

export class InstreamBody {
  private parts: Buffer[] = [];
  private size = 0;
  private stream: PassThrough | null = null;
  private settled = false;
  private failed = false;
  private resolveInput!: (input: Buffer | PassThrough | null) => void;
  /** Resolves with the whole body, or a stream of it, or null when the body was abandoned. */
  readonly input: Promise<Buffer | PassThrough | null>;

  constructor(private readonly holdLimit: number) {
    this.input = new Promise((resolve) => {
      this.resolveInput = resolve;
    });
  }

  get abandoned(): boolean {
    return this.failed;
  }

  /** Adds bytes; returns false when the reader is behind (the caller should stop reading). */
  write(data: Buffer): boolean {
    if (this.failed) return true;
    if (this.stream) return this.stream.write(data);
    this.parts.push(data);
    this.size += data.length;
    if (this.size <= this.holdLimit) return true;
    const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
    stream.on('error', () => {});
    this.stream = stream;
    let ok = true;
    for (const p of this.parts) ok = stream.write(p);
    this.parts = [];
    this.settle(stream);
    return ok;
  }

  /** Calls `fn` once the reader has caught up (only meaningful after write returned false). */
  onDrain(fn: () => void): void {
    if (this.stream) this.stream.once('drain', fn);
    else fn();
  }

  end(): void {
    if (this.failed) return;
    if (this.stream) this.stream.end();
    else this.settle(this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts));
    this.parts = [];
  }

  fail(e: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.parts = [];
    this.stream?.destroy(e);
    this.settle(null);
  }

  private settle(v: Buffer | PassThrough | null): void {
    if (this.settled) return;
    this.settled = true;
    this.resolveInput(v);
  }
}
