/**
 * The Scanner contract (DESIGN 4.4). Every protocol session, service and CLI command reaches the
 * engine only through this interface, so the builtin engine and a remote clamd are interchangeable.
 */
import type { Readable } from 'node:stream';

export type ScanInput = Buffer | Readable | NodeJS.ReadableStream | { path: string };

export type Verdict =
  | { status: 'clean' }
  /** `location` is the path through containers, outermost first, e.g. ['mail', 'invoice.zip', 'a.exe']. */
  | { status: 'infected'; signature: string; location: string[] }
  | { status: 'error'; reason: string; code?: string };

export interface ScanContext {
  /** Name of the outermost object, used as the first element of `location` (a file name, 'body', 'mail'). */
  name?: string;
  /** Aborts the scan; the verdict is then `error` with code ERR_SCAN_ABORTED. */
  signal?: AbortSignal;
  /** Size when known in advance (Content-Length, SIZE), lets the engine plan EOF-relative matching. */
  size?: number;
}

export interface ScannerVersion {
  engine: string;
  signatures: number;
  databaseVersion: string;
}

export interface Scanner {
  scan(input: ScanInput, ctx?: ScanContext): Promise<Verdict>;
  version(): ScannerVersion;
  /** Releases sockets, timers and temp files. */
  close?(): Promise<void>;
}
