/**
 * Reading a streamed object, of declared size (an HTTP body with Content-Length) or not: the matcher
 * runs on each chunk as it arrives instead of after the last byte, and the bytes are kept only when
 * the object's head names a container, or (`keepAll`) when the matcher will want the last ones again
 * once the size is known (signatures placed relative to the end, size not declared). Most large downloads are not containers the
 * engine opens (media, disk images, random data), and for them this drops the spool's SHA-256, the
 * write to a temp file and the read back before matching (together ~4.5 ms per MB on the critical
 * path of a 100 MB download, measured with bench/https.ts). A container is spooled (hashed on the
 * way, for the verdict cache) because its unpacker needs random access once the last byte is in.
 */
import { Readable } from 'node:stream';
import { ScanError } from '../errors.js';
import type { MatchSession } from './match/index.js';
import type { Spool } from './source.js';
import type { ScanInput } from './types.js';
import type { Unpacker } from './unpack/types.js';

/** Head bytes given to container detection (detectors see at least 4 KiB when the object has them). */
export const HEAD_BYTES = 4096;

export interface StreamedOptions {
  /** The declared size: the matcher plans EOF-relative offsets with it, so the stream must match it. */
  size: number | undefined;
  /** More bytes than this end the read (maxFileSize). */
  maxBytes: number;
  session: MatchSession;
  /** The container type the head names, or null. */
  detect(head: Buffer): Unpacker | null;
  /** Spool every byte, not only a container's (no SHA-256 then: the caller hashes a container's). */
  keepAll: boolean;
  newSpool(digest: boolean): Spool<boolean>;
  signal: AbortSignal;
  /** Stop reading once the session has decided (ScanContext.decideEarly). */
  decideEarly: boolean;
}

export type StreamedObject =
  /** Every declared byte arrived and was matched; `spool` holds them when `unpacker` is set. */
  | {
      kind: 'complete';
      received: number;
      head: Buffer;
      unpacker: Unpacker | null;
      spool: Spool<boolean> | null;
    }
  /** The session decided before the end (decideEarly): the rest was not read. */
  | { kind: 'decided'; signature: string }
  /** More than maxBytes arrived. */
  | { kind: 'too-big' }
  /** The stream ended short of, or ran past, its declared size (matching with a wrong size proves nothing). */
  | { kind: 'size-mismatch'; received: number };

/**
 * Feeds every chunk to the match session as it arrives. On a size mismatch the stream is destroyed
 * and nothing is returned to dispose; otherwise the caller ends the session and owns the spool.
 */
export async function readStreamed(
  input: Exclude<ScanInput, { path: string } | Buffer>,
  o: StreamedOptions,
): Promise<StreamedObject> {
  const stream = input instanceof Readable ? input : Readable.from(input as AsyncIterable<Buffer>);
  // Chunks of the head until it is judged (then null), and what the judgement gave.
  let head: Buffer[] | null = [];
  let firstBytes: Buffer = Buffer.alloc(0);
  let headBytes = 0;
  const kept: { unpacker: Unpacker | null; spool: Spool<boolean> | null } = {
    unpacker: null,
    spool: o.keepAll ? o.newSpool(false) : null,
  };
  let received = 0;
  if (o.signal.aborted) throw new ScanError('ERR_SCAN_ABORTED', 'scan aborted');
  // A stalled stream must not outlive the timeout or the caller's abort.
  const onAbort = () => stream.destroy(new ScanError('ERR_SCAN_ABORTED', 'scan aborted'));
  o.signal.addEventListener('abort', onAbort, { once: true });
  // Once: when HEAD_BYTES have arrived, or at the end for a smaller object.
  const judgeHead = async (parts: Buffer[]) => {
    head = null;
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, headBytes);
    firstBytes = all.subarray(0, HEAD_BYTES);
    kept.unpacker = o.detect(firstBytes);
    if (!kept.unpacker || kept.spool) return;
    kept.spool = o.newSpool(true);
    for (const p of parts) await kept.spool.write(p);
  };
  try {
    for await (const raw of stream) {
      if (o.signal.aborted) throw new ScanError('ERR_SCAN_ABORTED', 'scan aborted');
      const chunk = typeof raw === 'string' ? Buffer.from(raw) : (raw as Buffer);
      received += chunk.length;
      if (received > (o.size ?? o.maxBytes)) {
        stream.destroy();
        break;
      }
      o.session.write(chunk);
      if (o.decideEarly && o.session.decided) {
        // Leaving the loop destroys the stream: the caller stops feeding it on the verdict.
        await kept.spool?.dispose();
        return { kind: 'decided', signature: o.session.decided };
      }
      if (kept.spool) await kept.spool.write(chunk);
      if (head) {
        head.push(chunk);
        headBytes += chunk.length;
        if (headBytes >= HEAD_BYTES) await judgeHead(head);
      }
    }
    if (head && received === (o.size ?? received)) await judgeHead(head);
  } catch (e) {
    await kept.spool?.dispose();
    throw e;
  } finally {
    o.signal.removeEventListener('abort', onAbort);
  }
  if (received !== (o.size ?? received) || received > o.maxBytes) {
    await kept.spool?.dispose();
    return o.size === undefined ? { kind: 'too-big' } : { kind: 'size-mismatch', received };
  }
  return { kind: 'complete', received, head: firstBytes, ...kept };
}
