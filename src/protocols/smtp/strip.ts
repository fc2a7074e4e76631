/**
 * Policy `strip`: the message is split into its MIME parts with mailsplit, each leaf part's decoded
 * content is scanned on its own, and an infected part's headers and body are replaced by a short
 * text/plain notice. Every other byte — headers, boundaries, preambles, clean parts — goes through
 * mailsplit's Joiner unchanged (its documented round-trip guarantee), so clean attachments arrive
 * byte-identical.
 *
 * Each part is held in a Spool (memory, then a temp file) while it is scanned, so a large attachment
 * costs disk, not memory.
 */
import { Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Joiner, Splitter } from '@zone-eu/mailsplit';
import { type ObjectSource, Spool } from '../../engine/source.js';
import type { ScanInput, Scanner, Verdict } from '../../engine/types.js';

export interface RemovedPart {
  /** File name, or the content type when the part has none. */
  name: string;
  signature: string;
  location: string[];
}

export interface StripResult {
  source: ObjectSource;
  /** The rebuilt message as a scan input (the Spool's own, already hashed). */
  input: ScanInput;
  removed: RemovedPart[];
  /** A part whose scan failed: the caller must not forward the message. */
  error: string | null;
  dispose(): Promise<void>;
}

export interface StripOptions {
  scanner: Scanner;
  spoolDir: string;
  /** Bytes of one part kept in memory before its spool moves to disk. */
  memoryLimit?: number;
  /** Text of the notice; gets the part name and the signature. */
  notice?: (part: RemovedPart) => string;
}

// mailsplit ships CommonJS with typings that do not describe the node objects in detail.
interface MimeNodeLike {
  type: 'node';
  multipart?: string | false;
  filename?: string | false;
  contentType?: string | false;
  headers: { update(key: string, value: string): void; remove(key: string): void };
  getDecoder(): NodeJS.ReadWriteStream;
}
type SplitChunk = MimeNodeLike | { type: 'body' | 'data'; value: Buffer };

export function defaultNotice(p: RemovedPart): string {
  return [
    `scangate removed this part of the message: ${p.name}`,
    `It contained malware: ${p.signature}.`,
    'The rest of the message was delivered unchanged.',
    '',
  ].join('\r\n');
}

class PartScrubber extends Transform {
  readonly removed: RemovedPart[] = [];
  error: string | null = null;
  private pending: { node: MimeNodeLike; spool: Spool } | null = null;
  private index = 0;

  constructor(private readonly o: StripOptions) {
    super({ objectMode: true });
  }

  override _transform(obj: SplitChunk, _enc: BufferEncoding, cb: TransformCallback): void {
    this.handle(obj).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.release().then(() => cb(), cb);
  }

  private async handle(obj: SplitChunk): Promise<void> {
    if (obj.type === 'body') {
      if (this.pending) await this.pending.spool.write(obj.value);
      else this.push(obj.value);
      return;
    }
    await this.release();
    if (obj.type === 'node' && !obj.multipart) {
      this.pending = {
        node: obj,
        spool: new Spool({ dir: this.o.spoolDir, memoryLimit: this.o.memoryLimit ?? 4 * 1024 * 1024 }),
      };
      return;
    }
    this.push(obj);
  }

  /** Scans the held part and sends it on, as it was or replaced by the notice. */
  private async release(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    this.index++;
    const name = p.node.filename || `part ${this.index} (${p.node.contentType || 'text/plain'})`;
    try {
      const { source } = await p.spool.finish();
      const verdict = await this.scanPart(p.node, source, name);
      if (verdict.status === 'error') this.error ??= `${name}: ${verdict.reason}`;
      if (verdict.status === 'infected') {
        const part = { name, signature: verdict.signature, location: verdict.location };
        this.removed.push(part);
        p.node.headers.update('Content-Type', 'text/plain; charset=utf-8');
        p.node.headers.update('Content-Transfer-Encoding', '7bit');
        p.node.headers.update('Content-Disposition', 'inline');
        p.node.headers.remove('Content-ID');
        this.push(p.node);
        this.push(Buffer.from((this.o.notice ?? defaultNotice)(part), 'utf8'));
        return;
      }
      this.push(p.node);
      for await (const chunk of source.stream()) this.push(chunk);
    } finally {
      await p.spool.dispose();
    }
  }

  private async scanPart(node: MimeNodeLike, source: ObjectSource, name: string): Promise<Verdict> {
    const decoder = node.getDecoder();
    const raw = Readable.from(source.stream());
    raw.on('error', (e) => (decoder as unknown as Readable).destroy(e));
    raw.pipe(decoder as unknown as NodeJS.WritableStream);
    return this.o.scanner.scan(decoder as unknown as Readable, { name });
  }
}

/** Runs the strip pass over a spooled message; the result is a new spool the caller disposes. */
export async function stripInfectedParts(message: ObjectSource, o: StripOptions): Promise<StripResult> {
  const out = new Spool({ dir: o.spoolDir, memoryLimit: 16 * 1024 * 1024 });
  const scrubber = new PartScrubber(o);
  const collect = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.write(chunk).then(() => cb(), cb);
    },
  });
  try {
    await pipeline(Readable.from(message.stream()), new Splitter(), scrubber, new Joiner(), collect);
    const { source } = await out.finish();
    return {
      source,
      input: out.scanInput(),
      removed: scrubber.removed,
      error: scrubber.error,
      dispose: () => out.dispose(),
    };
  } catch (e) {
    await out.dispose();
    throw e;
  }
}
