/**
 * Recursive file-system watching, one inotify watch per directory. Node 20.20's own
 * `fs.watch(dir, { recursive: true })` works on Linux (checked here: it reports files in folders
 * created later) and is built the same way in JavaScript; doing it explicitly lets the agent decide
 * what happens when a folder appears (walk it at once and report its files, which may predate the
 * watch) and when a watch cannot be added (inotify limit: 'overflow', so the agent rescans).
 * Emits 'file' for every path that may have new content; the agent decides whether it has settled.
 */
import { EventEmitter } from 'node:events';
import { type FSWatcher, type Stats, watch } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { Logger } from '../logger.js';

export interface TreeWatcherOptions {
  ignore?: (path: string) => boolean;
  logger: Logger;
}

export class TreeWatcher extends EventEmitter<{ file: [string]; overflow: [string] }> {
  private readonly watchers = new Map<string, FSWatcher>();
  private closed = false;

  constructor(private readonly o: TreeWatcherOptions) {
    super();
  }

  get watchedDirs(): number {
    return this.watchers.size;
  }

  /**
   * Watches `root` and every folder below it; `report` also emits the files already there (those it
   * accepts, when it is a filter).
   */
  async add(root: string, report: boolean | ((path: string, st: Stats) => boolean) = false): Promise<void> {
    if (this.closed || this.o.ignore?.(root)) return;
    if (this.watchers.has(root)) {
      if (!report) return;
    } else this.watchDir(root);
    let names: string[];
    try {
      names = await readdir(root);
    } catch {
      return;
    }
    for (const name of names) {
      const full = join(root, name);
      if (this.o.ignore?.(full)) continue;
      const st = await lstat(full).catch(() => null);
      if (!st) continue;
      if (st.isDirectory()) await this.add(full, report);
      else if (report && st.isFile() && (report === true || report(full, st))) this.emit('file', full);
    }
  }

  private watchDir(dir: string): void {
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: true }, (_event, name) => {
        if (name === null) {
          // The kernel did not say which entry: report the folder's files again.
          void this.rescanDir(dir);
          return;
        }
        void this.entry(join(dir, name.toString()));
      });
    } catch (e) {
      this.o.logger.warn({ dir, err: (e as Error).message }, 'cannot watch folder');
      this.emit('overflow', dir);
      return;
    }
    w.on('error', () => this.drop(dir));
    this.watchers.set(dir, w);
  }

  private async entry(path: string): Promise<void> {
    if (this.closed || this.o.ignore?.(path)) return;
    const st = await lstat(path).catch(() => null);
    if (!st) {
      if (this.watchers.has(path)) this.drop(path);
      return;
    }
    if (st.isDirectory()) {
      // New folder (or moved in): watch it and report what is already inside.
      if (!this.watchers.has(path)) await this.add(path, true);
    } else if (st.isFile()) this.emit('file', path);
  }

  private async rescanDir(dir: string): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) await this.entry(join(dir, n));
  }

  /** Stops watching `dir` and every folder below it. */
  private drop(dir: string): void {
    for (const [d, w] of this.watchers) {
      if (d === dir || d.startsWith(dir + sep)) {
        w.close();
        this.watchers.delete(d);
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
