/**
 * The Scanner contract (DESIGN 4.4). Every protocol session, service and CLI command reaches the
 * engine only through this interface, so the builtin engine and a remote clamd are interchangeable.
 */
import type { Readable } from 'node:stream';

export type ScanInput = Buffer | Readable | NodeJS.ReadableStream | { path: string };

export type Verdict =
  | { status: 'clean' }
  /** `location` is the path through containers, outermost first, e.g. ['mail', 'invoice.zip', 'a.exe']. */
  | {
      status: 'infected';
      signature: string;
      location: string[];
      /**
       * With ScanContext.allMatches: every signature that matched, per object (a container and what
       * it holds each count), the first being `signature` at `location`. Absent otherwise.
       */
      matches?: Match[];
    }
  | { status: 'error'; reason: string; code?: string };

/** One signature that matched one object (`location` as in Verdict). */
export interface Match {
  signature: string;
  location: string[];
}

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
  /**
   * Report every signature that matches (clamd ALLMATCHSCAN, clamscan --allmatch) in
   * `matches`, instead of stopping at the first: every byte of every object is matched and a
   * container is opened even when its own bytes matched. The builtin engine honours it; the clamd
   * backend answers with one signature (clamd's INSTREAM has no all-match form).
   */
  allMatches?: boolean;
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
