/**
 * The contract between the engine's recursive scanner and each container format. An unpacker sees a
 * random-access ObjectSource and yields entries; the scanner streams each entry into the matcher and,
 * if the entry is itself a container, recurses (depth, file count, and total size limits are the
 * scanner's job; per-entry output size and compression ratio are the unpacker's, as only it knows
 * the compressed size).
 */
import type { ObjectSource } from '../source.js';

export interface UnpackContext {
  /** Largest decompressed entry that will be produced in full (engine.limits.maxFileSize). */
  maxFileSize: number;
  /** Most entries one container may yield (engine.limits.maxFiles). */
  maxFiles: number;
  /** Largest ratio of produced bytes to compressed bytes for a single entry (zip-bomb guard). */
  maxCompressionRatio: number;
  /** Aborted on timeout or when the caller gives up; unpackers check it between chunks. */
  signal: AbortSignal;
}

export interface Entry {
  /** Name as stored in the container (used in the verdict's location path); '' when the format has none. */
  name: string;
  /** Declared decompressed size, when the format states one. */
  size?: number;
  /** Encrypted entries cannot be scanned; the scanner reports them (Heuristics.Encrypted.*) by policy. */
  encrypted?: boolean;
  /**
   * The entry's decompressed bytes. Must be consumed (or abandoned with `return()`) before the next entry is
   * requested. Throws UnpackLimitError when a per-entry limit is hit, UnpackError when the data is corrupt.
   */
  open(): AsyncIterable<Buffer>;
}

export interface Unpacker {
  /** Short type name, e.g. 'zip', 'gzip', 'mime'; appears in logs and in Heuristics names. */
  readonly type: string;
  /** Cheap test on the first bytes (at least 4 KiB when the object is that large) and the total size. */
  detect(head: Buffer, size: number): boolean;
  entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry>;
}
