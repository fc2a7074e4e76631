/**
 * clamd's reply texts (ClamAV 1.4 clamd/session.c conn_reply*, print_ver, print_commands;
 * clamd/thrmgr.c thrmgr_printstats), byte for byte. Inside IDSESSION every reply carries the
 * command's id (`3: stream: OK`); replies end with the terminator of the command they answer.
 */
import type { Verdict } from '../../engine/types.js';
import { CLAMD_COMMANDS, type Terminator } from './parser.js';

export interface ReplyTarget {
  /** IDSESSION id (1-based), or 0 outside a session. */
  id: number;
  term: Terminator;
}

export function reply(to: ReplyTarget, text: string): Buffer {
  return Buffer.from(`${to.id ? `${to.id}: ` : ''}${text}${to.term}`, 'utf8');
}

/** `PATH: OK`, `PATH: NAME FOUND`, `PATH: REASON ERROR` (conn_reply_single / _virus / _errno). */
export function verdictText(path: string, v: Verdict): string {
  if (v.status === 'clean') return `${path}: OK`;
  if (v.status === 'infected') return `${path}: ${v.signature} FOUND`;
  return `${path}: ${v.reason} ERROR`;
}

/**
 * The lines for one file: every match on its own `PATH: NAME FOUND` line when the verdict carries
 * them (ALLMATCHSCAN: clamd's virus-found callback replies once per signature), else one line.
 */
export function verdictLines(path: string, v: Verdict): string[] {
  if (v.status === 'infected' && v.matches?.length)
    return v.matches.map((m) => `${path}: ${m.signature} FOUND`);
  return [verdictText(path, v)];
}

export const UNKNOWN_COMMAND = 'UNKNOWN COMMAND';
export const COMMAND_UNAVAILABLE = 'COMMAND UNAVAILABLE';
export const STREAM_LIMIT = 'INSTREAM size limit exceeded. ERROR';
/** Always LF-terminated, whatever the command's framing (server-th.c recvloop). */
export const COMMAND_READ_TIMED_OUT = Buffer.from('COMMAND READ TIMED OUT\n');
export const INVALID_IN_SESSION = 'Command invalid inside IDSESSION. ERROR';
export const LEGACY_IN_SESSION =
  'Only new-line terminated nCMDS or NULL-terminated zCMDS are accepted inside IDSESSION. ERROR';

export interface VersionInfo {
  /** What follows "ClamAV ", e.g. "1.4.6" for clamd; scangate says which engine it is. */
  engine: string;
  /** Database version number (the middle field clients parse), 0 when there is none. */
  dbVersion: number;
  /** Database build time; printed ctime-style like clamd (cli_ctime). */
  dbTime: Date | null;
}

/** `ClamAV ENGINE/DBVER/DBTIME` or `ClamAV ENGINE` without a numbered database (print_ver). */
export function versionText(v: VersionInfo): string {
  if (!v.dbVersion) return `ClamAV ${v.engine}`;
  return `ClamAV ${v.engine}/${v.dbVersion}/${ctime(v.dbTime ?? new Date(0))}`;
}

/** `VERSION| COMMANDS: SCAN QUIT …` (print_commands prints the version with '|' as terminator). */
export function versionCommandsText(v: VersionInfo): string {
  return `${versionText(v)}| COMMANDS: ${CLAMD_COMMANDS.join(' ')}`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ctime(3) without the newline, in UTC: `Mon Nov 23 11:00:00 2026`. */
export function ctime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(
    d.getUTCHours(),
  )}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

export interface DaemonStats {
  live: number;
  idle: number;
  max: number;
  queued: number;
  /** Scans the engine actually ran (a cache answer is not one). */
  scans: number;
  cacheHits: number;
  cacheMisses: number;
  connections: number;
}

/**
 * The STATS block in thrmgr_printstats' layout (clamdtop parses POOLS/STATE/THREADS/QUEUE/MEMSTATS),
 * plus one `SCANGATE:` line with the engine's own counters; the format is "subject to change" per
 * clamd(8), and clamdtop skips lines it does not know.
 */
export function statsText(s: DaemonStats): string {
  const mem = process.memoryUsage();
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(3)}M`;
  return [
    'POOLS: 1',
    '',
    'STATE: VALID PRIMARY',
    `THREADS: live ${s.live}  idle ${s.idle} max ${s.max} idle-timeout 30`,
    `QUEUE: ${s.queued} items`,
    '',
    `MEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A pools 1 pools_used ${mb(mem.heapUsed)} pools_total ${mb(mem.heapTotal)}`,
    `SCANGATE: scans ${s.scans} cache-hits ${s.cacheHits} cache-misses ${s.cacheMisses} connections ${s.connections}`,
    'END',
  ].join('\n');
}
