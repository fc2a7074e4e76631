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

/**
 * The verdict for a scan that threw instead of answering (a remote scanner gone, a spool that could
 * not be read): `error`, keeping the error's code when it has a string one, so the protocols answer
 * it as a scanner failure (HTTP 503, SMTP 451, FTP 451) and never as clean.
 */
export function scanFailure(e: unknown): Verdict {
  const err = e as { message?: string; code?: unknown };
  const reason = err?.message ?? String(e);
  return typeof err?.code === 'string'
    ? { status: 'error', reason, code: err.code }
    : { status: 'error', reason };
}

export interface ScanContext {
  /** Name of the outermost object, used as the first element of `location` (a file name, 'body', 'mail'). */
  name?: string;
  /** Aborts the scan; the verdict is then `error` with code ERR_SCAN_ABORTED. */
  signal?: AbortSignal;
  /** Size when known in advance (Content-Length, SIZE), lets the engine plan EOF-relative matching. */
  size?: number;
  /**
   * The caller acts on a verdict that comes before the stream's end and stops feeding it (a relay
   * that cuts a download as soon as it is known infected). Without it the engine reads every byte
   * first, as a protocol that answers only after the whole object (clamd INSTREAM) needs.
   */
  decideEarly?: boolean;
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
