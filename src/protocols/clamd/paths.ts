/**
 * SCAN, CONTSCAN, MULTISCAN and ALLMATCHSCAN on a path the daemon reads itself, with clamd's walk
 * and reply rules (ClamAV 1.4 clamd/session.c command(), clamd/scanner.c scan_callback):
 * - a file is named by its real path; the closing `ARG: OK` names the argument as given and is sent
 *   only when nothing was found and not everything failed;
 * - SCAN (and ALLMATCHSCAN) stop at the first detection, CONTSCAN and MULTISCAN go on; MULTISCAN
 *   scans a directory's files in parallel and replies as they finish;
 * - symbolic links below the top are skipped (FollowFileSymlinks/FollowDirectorySymlinks default no),
 *   as are special files, except at the top: `ARG: Not supported file type ERROR`;
 * - a path that cannot be read: `ARG: File path check failure: <strerror>. ERROR`.
 * - ALLMATCHSCAN scans with ScanContext.allMatches and sends a `PATH: NAME FOUND` line per match
 *   (a container's own bytes and each entry in it count apart, so a name may come twice), and,
 *   like SCAN, stops at the first file with a detection.
 */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Verdict } from '../../engine/types.js';
import { verdictLines, verdictText } from './replies.js';

export type PathCommand = 'SCAN' | 'CONTSCAN' | 'MULTISCAN' | 'ALLMATCHSCAN';

export interface PathScanOptions {
  /** `allMatches`: the command is ALLMATCHSCAN (report every signature that matches). */
  scan(path: string, allMatches: boolean): Promise<Verdict>;
  /** Parallel scans for MULTISCAN (the daemon's slots bound them again). */
  parallel: number;
  /** clamd's MaxDirectoryRecursion (default 15). */
  maxDepth: number;
  signal: AbortSignal;
  send(text: string): void;
}

export interface PathScanResult {
  total: number;
  errors: number;
  infected: number;
}

const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  EIO: 'Input/output error',
};

export function strerror(e: NodeJS.ErrnoException): string {
  return (e.code && STRERROR[e.code]) ?? e.message;
}

export async function scanPath(
  arg: string,
  command: PathCommand,
  o: PathScanOptions,
): Promise<PathScanResult> {
  const r: PathScanResult = { total: 0, errors: 0, infected: 0 };
  let top: Awaited<ReturnType<typeof stat>>;
  try {
    top = await stat(arg);
  } catch (e) {
    r.total++;
    r.errors++;
    o.send(`${arg}: File path check failure: ${strerror(e as NodeJS.ErrnoException)}. ERROR`);
    return r;
  }
  const stopAtFirst = command === 'SCAN' || command === 'ALLMATCHSCAN';
  const parallel = command === 'MULTISCAN' && top.isDirectory();

  const scanFile = async (path: string): Promise<void> => {
    if (o.signal.aborted) return;
    let real = path;
    try {
      real = await realpath(path);
    } catch {}
    const v = await o.scan(real, command === 'ALLMATCHSCAN');
    if (o.signal.aborted) return;
    if (v.status === 'infected') {
      r.infected++;
      for (const line of verdictLines(real, v)) o.send(line);
    } else if (v.status === 'error') {
      r.errors++;
      o.send(v.code === 'EACCES' ? `${real}: Access denied. ERROR` : verdictText(real, v));
    }
  };

  r.total++;
  if (top.isFile()) await scanFile(arg);
  else if (!top.isDirectory()) o.send(`${arg}: Not supported file type ERROR`);
  else {
    const files: string[] = [];
    const walk = async (dir: string, depth: number): Promise<boolean> => {
      let names: string[];
      try {
        names = (await readdir(dir)).sort();
      } catch (e) {
        r.total++;
        r.errors++;
        o.send(`${dir}: File path check failure: ${strerror(e as NodeJS.ErrnoException)}. ERROR`);
        return true;
      }
      for (const name of names) {
        if (o.signal.aborted) return false;
        const full = join(dir, name);
        let st: Awaited<ReturnType<typeof lstat>>;
        try {
          st = await lstat(full);
        } catch {
          continue;
        }
        if (st.isDirectory()) {
          if (depth < o.maxDepth && !(await walk(full, depth + 1))) return false;
          continue;
        }
        r.total++;
        if (!st.isFile()) continue; // links and special files: skipped, counted as clamd does
        if (parallel) {
          files.push(full);
          continue;
        }
        await scanFile(full);
        if (stopAtFirst && r.infected > 0) return false;
      }
      return true;
    };
    await walk(arg, 1);
    if (parallel) await runPool(files, Math.max(1, o.parallel), scanFile);
  }
  if (r.infected === 0 && r.errors !== r.total && !o.signal.aborted) o.send(`${arg}: OK`);
  return r;
}

async function runPool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
