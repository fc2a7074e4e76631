/**
 * The on-access agent: watches folders, waits until a written file has settled (same size and mtime
 * over `settleMs`: Node has no IN_CLOSE_WRITE, so "closed after writing" is read as "stopped
 * changing"), scans it through a Scanner (the local engine, or a remote clamd-protocol daemon through
 * the clamd backend) and moves infected files to quarantine.
 *
 * Under storms (10,000 files at once) work stays bounded: at most `concurrency` scans run, and at
 * most `maxPending` paths wait (a path is tracked once however many events it gets). Past that
 * bound new paths are not tracked but the agent remembers it overflowed and, once the queue has
 * drained, walks the folders again; with the verdict cache, content already judged costs a hash.
 */
import { stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import type { EventSink } from '../admin/events.js';
import type { Scanner, Verdict } from '../engine/types.js';
import type { Logger } from '../logger.js';
import { type Quarantine, type QuarantineRecord, sha256File } from './quarantine.js';
import { TreeWatcher } from './watch.js';

export interface AgentOptions {
  roots: string[];
  scanner: Scanner;
  quarantine: Quarantine | null;
  logger: Logger;
  events?: EventSink;
  /** Quiet time before a file counts as written (default 250 ms). */
  settleMs?: number;
  /** Scans at once (default 4). */
  concurrency?: number;
  /** Paths waiting to settle or to be scanned, at most (default 100,000). */
  maxPending?: number;
  /** Scan every file already present when starting. */
  initialScan?: boolean;
  onResult?: (r: AgentResult) => void;
}

export interface AgentResult {
  path: string;
  verdict: Verdict;
  quarantined?: QuarantineRecord;
  /** From the first event for this content to the verdict (and quarantine), in ms. */
  latencyMs: number;
  quarantineError?: string;
  /** Infected, but an operator restored this content from quarantine: left in place. */
  allowed?: boolean;
}

/** Files remembered as scanned (about 150 bytes each). */
const RECENT_CAP = 200_000;

/** What a file looked like when it was last scanned: the same again is not scanned again. */
interface Seen {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

interface Tracked {
  firstSeen: number;
  size: number;
  mtimeMs: number;
  checked: boolean;
  timer: NodeJS.Timeout | null;
}

export interface AgentStats {
  scanned: number;
  infected: number;
  quarantined: number;
  errors: number;
  pending: number;
  peakPending: number;
  overflows: number;
  watchedDirs: number;
}

export class Agent {
  private readonly tracked = new Map<string, Tracked>();
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private active = 0;
  private overflowed = false;
  /** Wall-clock time of the first event not tracked since the last rescan. */
  private overflowSince = 0;
  private rescanSince = 0;
  /** Wall-clock time the agent was last idle (nothing settling, queued or scanning). */
  private lastIdle = Date.now();
  /** Recently scanned files (insertion-ordered, capped), so a rescan or a spurious event costs a stat. */
  private readonly recent = new Map<string, Seen>();
  private rescanning = false;
  private readonly watcher: TreeWatcher;
  private readonly roots: string[];
  private readonly settleMs: number;
  private readonly concurrency: number;
  private readonly maxPending: number;
  private idleWaiters: (() => void)[] = [];
  readonly stats: AgentStats = {
    scanned: 0,
    infected: 0,
    quarantined: 0,
    errors: 0,
    pending: 0,
    peakPending: 0,
    overflows: 0,
    watchedDirs: 0,
  };

  constructor(private readonly o: AgentOptions) {
    this.roots = o.roots.map((r) => resolve(r));
    this.settleMs = o.settleMs ?? 250;
    this.concurrency = o.concurrency ?? 4;
    this.maxPending = o.maxPending ?? 100_000;
    const qdir = o.quarantine ? resolve(o.quarantine.dir) : null;
    this.watcher = new TreeWatcher({
      logger: o.logger,
      // Never scan the quarantine itself, should it sit under a watched folder.
      ignore: qdir ? (p) => p === qdir || p.startsWith(qdir + sep) : undefined,
    });
    this.watcher.on('file', (p) => this.touch(p));
    this.watcher.on('overflow', () => this.overflow());
  }

  async start(): Promise<void> {
    await this.o.quarantine?.init();
    for (const r of this.roots) await this.watcher.add(r, this.o.initialScan ?? false);
    this.stats.watchedDirs = this.watcher.watchedDirs;
  }

  /** Resolves when nothing is settling, queued or being scanned. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  close(): void {
    this.watcher.close();
    for (const t of this.tracked.values()) if (t.timer) clearTimeout(t.timer);
    this.tracked.clear();
  }

  private isIdle(): boolean {
    return this.tracked.size === 0 && this.queue.length === 0 && this.active === 0 && !this.rescanning;
  }

  private pendingCount(): number {
    return this.tracked.size + this.queue.length;
  }

  /** A path may have new content: (re)start its settle timer. */
  private touch(path: string): void {
    const t = this.tracked.get(path);
    if (t) {
      t.checked = false;
      this.arm(path, t);
      return;
    }
    if (this.pendingCount() >= this.maxPending) {
      this.overflow();
      return;
    }
    const entry: Tracked = {
      firstSeen: performance.now(),
      size: -1,
      mtimeMs: -1,
      checked: false,
      timer: null,
    };
    this.tracked.set(path, entry);
    this.stats.pending = this.pendingCount();
    this.stats.peakPending = Math.max(this.stats.peakPending, this.stats.pending);
    this.arm(path, entry);
  }

  private arm(path: string, t: Tracked): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => void this.settle(path, t), this.settleMs);
  }

  private async settle(path: string, t: Tracked): Promise<void> {
    t.timer = null;
    const st = await stat(path).catch(() => null);
    if (this.tracked.get(path) !== t) return;
    if (!st?.isFile()) {
      this.tracked.delete(path);
      this.afterWork();
      return;
    }
    if (t.checked && st.size === t.size && st.mtimeMs === t.mtimeMs) {
      this.tracked.delete(path);
      if (this.unchanged(path, st)) {
        this.afterWork();
        return;
      }
      this.remember(path, { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
      this.enqueue(path, t.firstSeen);
      return;
    }
    t.size = st.size;
    t.mtimeMs = st.mtimeMs;
    t.checked = true;
    this.arm(path, t);
  }

  private readonly firstSeen = new Map<string, number>();

  private enqueue(path: string, firstSeen: number): void {
    if (this.queued.has(path)) return;
    this.queued.add(path);
    this.firstSeen.set(path, firstSeen);
    this.queue.push(path);
    this.pump();
  }

  private pump(): void {
    while (this.active < this.concurrency && this.queue.length > 0) {
      const path = this.queue.shift()!;
      this.queued.delete(path);
      this.active++;
      void this.scanOne(path).finally(() => {
        this.active--;
        this.pump();
        this.afterWork();
      });
    }
  }

  private async scanOne(path: string): Promise<void> {
    const since = this.firstSeen.get(path) ?? performance.now();
    this.firstSeen.delete(path);
    const verdict = await this.o.scanner.scan({ path }, { name: path });
    this.stats.scanned++;
    const result: AgentResult = { path, verdict, latencyMs: 0 };
    if (verdict.status === 'infected' && (await this.restoredByOperator(path))) {
      this.o.logger.info(
        { path, signature: verdict.signature },
        'restored from quarantine by an operator: left in place',
      );
      result.allowed = true;
    } else if (verdict.status === 'infected') {
      this.stats.infected++;
      if (this.o.quarantine) {
        try {
          result.quarantined = await this.o.quarantine.add(path, verdict.signature);
          this.stats.quarantined++;
        } catch (e) {
          result.quarantineError = (e as Error).message;
        }
      }
      this.o.logger.warn(
        {
          path,
          signature: verdict.signature,
          quarantine: result.quarantined?.id,
          err: result.quarantineError,
        },
        result.quarantined ? 'infected file quarantined' : 'infected file found',
      );
      this.o.events?.emit({
        kind: 'verdict',
        listener: 'agent',
        protocol: 'agent',
        object: path,
        signature: verdict.signature,
        location: verdict.location,
        action: result.quarantined ? 'quarantined' : 'error',
        reason: result.quarantineError,
      });
    } else if (verdict.status === 'error' && verdict.code !== 'ENOENT') {
      this.stats.errors++;
      this.o.logger.warn({ path, code: verdict.code, reason: verdict.reason }, 'agent scan error');
    }
    result.latencyMs = performance.now() - since;
    this.o.onResult?.(result);
  }

  private unchanged(path: string, st: Seen): boolean {
    const prev = this.recent.get(path);
    return !!prev && prev.size === st.size && prev.mtimeMs === st.mtimeMs && prev.ctimeMs === st.ctimeMs;
  }

  private async restoredByOperator(path: string): Promise<boolean> {
    if (!this.o.quarantine) return false;
    const allowed = await this.o.quarantine.allowed();
    if (allowed.size === 0) return false;
    return allowed.has(await sha256File(path).catch(() => ''));
  }

  private remember(path: string, seen: Seen): void {
    this.recent.delete(path);
    this.recent.set(path, seen);
    if (this.recent.size > RECENT_CAP) this.recent.delete(this.recent.keys().next().value as string);
  }

  private overflow(): void {
    if (this.overflowed) return;
    this.stats.overflows++;
    this.overflowed = true;
    // Every file changed since the agent was last idle may be among the untracked ones (events can
    // lag behind writes under a storm); during a rescan, the rescan's own window still applies.
    this.overflowSince = this.rescanning ? this.rescanSince : this.lastIdle - 2_000;
  }

  private afterWork(): void {
    this.stats.pending = this.pendingCount();
    if (this.overflowed && this.pendingCount() === 0 && this.active === 0 && !this.rescanning) {
      // Some paths were not tracked: walk everything again now that the queue is empty.
      this.overflowed = false;
      this.rescanning = true;
      this.rescanSince = this.overflowSince;
      this.o.logger.warn({ roots: this.roots }, 'agent queue overflowed; rescanning the watched folders');
      void (async () => {
        const changed = (path: string, st: Seen) =>
          st.ctimeMs >= this.rescanSince && !this.unchanged(path, st);
        for (const r of this.roots) await this.watcher.add(r, changed).catch(() => {});
      })().finally(() => {
        this.rescanning = false;
        this.afterWork();
      });
      return;
    }
    if (this.isIdle()) {
      this.lastIdle = Date.now();
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
