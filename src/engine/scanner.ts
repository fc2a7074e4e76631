/**
 * The builtin engine: spool the input, answer from the verdict cache when the content is known,
 * otherwise match the raw bytes and recurse into containers within ClamAV's limits (depth, files
 * per container, total bytes scanned, time). A limit hit is an explicit verdict
 * (`Heuristics.Limits.Exceeded.*`) unless `alertExceedsMax` is off, never a silent pass.
 * A stream is the exception to "spool first": it is matched as it arrives and spooled only when it
 * is a container, or, without a declared size, when the database has signatures placed relative to
 * the end, matched over the spool's last bytes once the end is in (see streamed.ts and scanStreamed).
 */
import type { EngineLimits } from '../config/schema.js';
import { ScanError, UnpackError, UnpackLimitError } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import type { VerdictCache } from './cache.js';
import type { Matcher } from './match/index.js';
import {
  allMatchVerdict,
  fill,
  hashSource,
  isPathInput,
  ScanDeadline,
  withoutRoot,
  withRoot,
} from './scan-support.js';
import { BufferSource, FileSource, type ObjectSource, Spool, spooledDigest } from './source.js';
import { HEAD_BYTES, readStreamed } from './streamed.js';
import type { Match, ScanContext, ScanInput, Scanner, ScannerVersion, Verdict } from './types.js';
import { detectContainer } from './unpack/index.js';
import type { UnpackContext, Unpacker } from './unpack/types.js';

export const LIMIT_PREFIX = 'Heuristics.Limits.Exceeded.';
/**
 * Single-stream compressors. A compressor around an archive (tar.gz, tar.bz2) is one container level,
 * as ClamAV counts it; a compressor inside a compressor still counts every layer, so a gzip chain
 * 10,000 deep stops at maxRecursion.
 */
const COMPRESSORS = new Set(['gzip', 'bzip2', 'szdd']);
/** Bytes per matcher call: large reads cut per-chunk overhead (file reads, async steps) on big objects. */
const MATCH_CHUNK = 4 * 1024 * 1024;
const YIELD_EVERY = 2 * MATCH_CHUNK;

/** What one loaded database gives the scanner; swapped whole on reload so scans in flight keep theirs. */
export interface EngineState {
  matcher: Matcher;
  version: string;
  signatures: number;
  /** Names the database in verdict-cache keys (SignatureDb.digest); `version` when absent. */
  cacheKey?: string;
}

export interface BuiltinScannerOptions {
  limits: EngineLimits;
  cache?: VerdictCache;
  /** Folder for spooled objects larger than `spoolMemory` (DESIGN: dataDir/spool). */
  spoolDir?: string;
  spoolMemory?: number;
  unpackers?: Unpacker[];
  logger?: Logger;
}

/** Per-scan accounting shared by every level of the recursion. */
interface ScanBudget {
  scannedBytes: number;
  readonly signal: AbortSignal;
  /** performance.now() past which the scan stops; checked by clock because in-memory sources never yield to timers. */
  readonly deadline: number;
  /** allMatches: every match so far, in the order found (the scan goes on after one); else null. */
  readonly found: Match[] | null;
}

class LimitHit extends Error {
  constructor(readonly limit: string) {
    super(limit);
  }
}

export class BuiltinScanner implements Scanner {
  private state: EngineState;
  private readonly limits: EngineLimits;
  private readonly logger: Logger;
  /** Scans the matcher actually ran (cache answers and joined scans are not counted): the cost metric. */
  readonly counters = { scans: 0, joined: 0 };
  /** Scans in progress by database version + SHA-256: a second request for the same content waits for the first. */
  private readonly inflight = new Map<string, Promise<Verdict>>();

  constructor(
    state: EngineState,
    private readonly options: BuiltinScannerOptions,
  ) {
    this.state = state;
    this.limits = options.limits;
    this.logger = options.logger ?? silentLogger;
  }

  version(): ScannerVersion {
    return {
      engine: 'scangate-builtin',
      signatures: this.state.signatures,
      databaseVersion: this.state.version,
    };
  }

  /** What verdicts of the current database are cached under (the database's part of the key). */
  cacheKey(): string {
    return this.state.cacheKey ?? this.state.version;
  }

  /** Hits and misses of the verdict cache (memory and, when configured, Redis). */
  cacheStats(): { hits: number; misses: number; size: number } | undefined {
    return this.options.cache?.stats();
  }

  /** Releases the cache's connections (Redis). */
  async close(): Promise<void> {
    await (this.options.cache as { close?: () => Promise<void> } | undefined)?.close?.();
  }

  /** Swaps in a new database; scans already running finish on the one they started with. */
  async swap(state: EngineState): Promise<void> {
    this.state = state;
    await this.options.cache?.clear();
  }

  async scan(input: ScanInput, ctx: ScanContext = {}): Promise<Verdict> {
    const state = this.state;
    const rootName = ctx.name ?? ('path' in input && typeof input.path === 'string' ? input.path : 'stream');
    const timeout = new ScanDeadline(this.limits.timeout, ctx.signal);
    const signal = timeout.signal;
    let spool: Spool | null = null;
    let opened: FileSource | null = null;
    const all = ctx.allMatches === true;
    try {
      let source: ObjectSource;
      let sha256: string;
      if (isPathInput(input)) {
        opened = await FileSource.open(input.path);
        if (opened.size > this.limits.maxFileSize) return this.limitVerdict('MaxFileSize', [rootName]);
        source = opened;
        // A Spool's own temp file: hashed while it was written, no second pass over it.
        sha256 = spooledDigest(input) ?? (await hashSource(opened, signal));
      } else if (Buffer.isBuffer(input)) {
        // Already in memory: scanned in place (copying it into a spool, or to disk past spoolMemory,
        // would only add a pass over it).
        if (input.length > this.limits.maxFileSize) return this.limitVerdict('MaxFileSize', [rootName]);
        source = new BufferSource(input);
        sha256 = spooledDigest(input) ?? (await hashSource(source, signal));
      } else if (!all && ctx.size !== undefined && Number.isSafeInteger(ctx.size) && ctx.size >= 0) {
        return await this.scanStreamed(state, input, ctx.size, rootName, signal, ctx.decideEarly === true);
      } else if (!all) {
        return await this.scanStreamed(state, input, undefined, rootName, signal, ctx.decideEarly === true);
      } else {
        // (Every match wanted: nothing to decide early, and the spool lets the cache answer next time.)
        spool = this.newSpool();
        const tooBig = await fill(spool, input, this.limits.maxFileSize, signal);
        if (tooBig) return this.limitVerdict('MaxFileSize', [rootName]);
        ({ source, sha256 } = await spool.finish());
      }
      const budget = this.newBudget(signal, all);
      return await this.judgeByDigest(
        state,
        sha256,
        rootName,
        async () => {
          const v = await this.scanObject(state, source, [rootName], 0, budget);
          return budget.found ? allMatchVerdict(v, budget.found) : v;
        },
        false,
        all,
      );
    } catch (e) {
      if (e instanceof LimitHit) return this.limitVerdict(e.limit, [rootName]);
      if (timeout.expired) return this.limitVerdict('MaxScanTime', [rootName]);
      if (ctx.signal?.aborted)
        return { status: 'error', code: 'ERR_SCAN_ABORTED', reason: 'scan aborted by caller' };
      const err = e as NodeJS.ErrnoException;
      const code = err.code && typeof err.code === 'string' ? err.code : 'ERR_SCAN';
      return { status: 'error', code, reason: err.message };
    } finally {
      timeout.dispose();
      await spool?.dispose();
      await opened?.close();
    }
  }

  /**
   * A stream, of declared size or not: matched while it arrives (readStreamed), spooled only when its
   * head names a container or, without a size, when the database places signatures relative to the
   * end: those are matched over the spool's last bytes once the size is known (the tail pass).
   * The verdict cache is keyed by SHA-256, which only a container's spool computes, so it serves
   * containers (whose unpacking it spares) and not plain objects, whose matching is done by the
   * time their last byte is in: hashing them to look up a verdict would cost about what it saves.
   */
  private async scanStreamed(
    state: EngineState,
    input: Exclude<ScanInput, { path: string } | Buffer>,
    size: number | undefined,
    rootName: string,
    signal: AbortSignal,
    decideEarly: boolean,
  ): Promise<Verdict> {
    const limits = this.limits;
    // The stream will exceed the limit (or break its own declaration): no need to read it first.
    if (size !== undefined && size > limits.maxFileSize) return this.limitVerdict('MaxFileSize', [rootName]);
    const budget = this.newBudget(signal);
    budget.scannedBytes = size ?? 0;
    if (budget.scannedBytes > limits.maxScanSize) throw new LimitHit('MaxScanSize');
    const session = state.matcher.session(size === undefined ? {} : { size });
    this.counters.scans++;
    const read = await readStreamed(input, {
      size,
      maxBytes: limits.maxFileSize,
      session,
      // Without a size the head decides alone (no detector reads the size; checked again below).
      detect: (head) => detectContainer(head, size ?? Number.MAX_SAFE_INTEGER, this.options.unpackers),
      keepAll: size === undefined && !state.matcher.sizeFree,
      newSpool: (digest) => this.newSpool(digest),
      signal,
      decideEarly,
    });
    if (read.kind === 'decided')
      return { status: 'infected', signature: read.signature, location: [rootName] };
    if (read.kind === 'too-big') return this.limitVerdict('MaxFileSize', [rootName]);
    if (read.kind === 'size-mismatch') {
      return {
        status: 'error',
        code: 'ERR_SCAN_SIZE',
        reason: `stream of declared size ${size} delivered ${read.received > (size ?? 0) ? 'more' : read.received} bytes`,
      };
    }
    const { unpacker, spool } = read;
    try {
      if (size === undefined) {
        budget.scannedBytes = read.received;
        if (read.received > limits.maxScanSize) throw new LimitHit('MaxScanSize');
        // A detector that did look at the size could name a container now that was not spooled.
        if (detectContainer(read.head, read.received, this.options.unpackers) !== unpacker)
          return { status: 'error', code: 'ERR_SCAN_SIZE', reason: 'container type changed with the size' };
      }
      const tailFrom = session.tailFrom();
      if (tailFrom !== null) {
        // The size is known now: the signatures placed relative to the end, over the last bytes.
        const { source } = await spool!.finish();
        for await (const chunk of source.stream(tailFrom, source.size, MATCH_CHUNK)) {
          if (signal.aborted) throw new ScanError('ERR_SCAN_ABORTED', 'scan aborted');
          session.writeTail(chunk);
        }
      }
      const names = session.end();
      if (names.length > 0) return { status: 'infected', signature: names[0]!, location: [rootName] };
      if (!unpacker || !spool) return { status: 'clean' };
      if (this.limits.maxRecursion <= 0) throw new LimitHit('MaxRecursion');
      const { source, sha256 } = await spool.finish();
      // Its raw bytes were matched above; what a cached verdict adds is what the container holds.
      return await this.judgeByDigest(
        state,
        sha256 ?? (await hashSource(source, signal)),
        rootName,
        () => this.scanEntries(state, unpacker, source, [rootName], 0, budget),
        true,
      );
    } finally {
      await spool?.dispose();
    }
  }

  /**
   * The verdict for content known by SHA-256: from the cache, from a scan of the same content already
   * running, or from `run` (whose clean or infected verdict is then cached). `counted`: the matcher
   * already ran for this scan (a streamed container), so `run` is not counted as a second scan.
   * `allMatches`: `run` reports every match, and only such a verdict may answer.
   */
  private async judgeByDigest(
    state: EngineState,
    sha256: string,
    rootName: string,
    run: () => Promise<Verdict>,
    counted = false,
    allMatches = false,
  ): Promise<Verdict> {
    const cache = this.options.cache;
    // A one-match verdict must not answer an all-matches scan (nor the reverse: same status, but
    // the cache would hold the bigger verdict for the common case): each has its own entries.
    const db = state.cacheKey ?? state.version;
    const key = allMatches ? `${db}+allmatch` : db;
    const cached = await cache?.get(key, sha256);
    if (cached) return withRoot(cached, rootName);
    const inflightKey = `${key}\0${sha256}`;
    const running = this.inflight.get(inflightKey);
    if (running) {
      const joined = await running.catch(() => null);
      // The first requester's failure (its abort, its timeout) is not ours: scan for ourselves then.
      if (joined && joined.status !== 'error') {
        this.counters.joined++;
        return withRoot(joined, rootName);
      }
    }
    if (!counted) this.counters.scans++;
    // The entry stays until the cache holds the verdict, so no request falls between the two.
    const scanning = run().then(async (v) => {
      const verdict = withoutRoot(v);
      if (cache && (verdict.status === 'clean' || verdict.status === 'infected')) {
        await cache.set(key, sha256, verdict);
      }
      return verdict;
    });
    this.inflight.set(inflightKey, scanning);
    try {
      return withRoot(await scanning, rootName);
    } finally {
      if (this.inflight.get(inflightKey) === scanning) this.inflight.delete(inflightKey);
    }
  }

  private newBudget(signal: AbortSignal, allMatches = false): ScanBudget {
    return {
      scannedBytes: 0,
      signal,
      deadline: performance.now() + this.limits.timeout,
      found: allMatches ? [] : null,
    };
  }

  /** `digest: false` for a spool only the matcher reads back (no SHA-256 on the way). */
  private newSpool<D extends boolean = true>(digest?: D): Spool<D> {
    return new Spool<D>({ dir: this.options.spoolDir, memoryLimit: this.options.spoolMemory, digest });
  }

  private limitVerdict(limit: string, location: string[]): Verdict {
    this.logger.info({ limit, location }, 'scan limit reached');
    if (!this.limits.alertExceedsMax) return { status: 'clean' };
    return { status: 'infected', signature: LIMIT_PREFIX + limit, location };
  }

  private async scanObject(
    state: EngineState,
    source: ObjectSource,
    location: string[],
    depth: number,
    budget: ScanBudget,
    viaCompressor = false,
  ): Promise<Verdict> {
    budget.scannedBytes += source.size;
    if (budget.scannedBytes > this.limits.maxScanSize) throw new LimitHit('MaxScanSize');

    const found = budget.found;
    const session = state.matcher.session({ size: source.size, allMatches: found !== null });
    let sinceYield = 0;
    for await (const chunk of source.stream(0, source.size, MATCH_CHUNK)) {
      if (budget.signal.aborted) throw new ScanError('ERR_SCAN_ABORTED', 'scan aborted');
      if (performance.now() > budget.deadline) throw new LimitHit('MaxScanTime');
      session.write(chunk);
      // An in-memory source never waits on I/O: let timers and sockets run between slices.
      sinceYield += chunk.length;
      if (sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    const names = session.end();
    if (found) {
      // All matches: note them and open the container all the same (clamscan --allmatch does).
      for (const signature of names) found.push({ signature, location });
    } else if (names.length > 0) return { status: 'infected', signature: names[0]!, location };

    const head = await source.read(0, HEAD_BYTES);
    const unpacker = detectContainer(head, source.size, this.options.unpackers);
    if (!unpacker) return { status: 'clean' };
    const level = viaCompressor && !COMPRESSORS.has(unpacker.type) ? depth - 1 : depth;
    if (level >= this.limits.maxRecursion) throw new LimitHit('MaxRecursion');
    return this.scanEntries(state, unpacker, source, location, level, budget);
  }

  private async scanEntries(
    state: EngineState,
    unpacker: Unpacker,
    source: ObjectSource,
    location: string[],
    depth: number,
    budget: ScanBudget,
  ): Promise<Verdict> {
    const uctx: UnpackContext = {
      maxFileSize: this.limits.maxFileSize,
      maxFiles: this.limits.maxFiles,
      maxCompressionRatio: this.limits.maxCompressionRatio,
      signal: budget.signal,
    };
    let index = 0;
    try {
      for await (const entry of unpacker.entries(source, uctx)) {
        index++;
        if (index > this.limits.maxFiles) throw new LimitHit('MaxFiles');
        const name = entry.name || `${unpacker.type}#${index}`;
        if (entry.encrypted) {
          this.logger.info({ location: [...location, name] }, 'encrypted entry not scanned');
          continue;
        }
        const verdict = await this.scanEntry(
          state,
          entry.open(),
          [...location, name],
          depth,
          budget,
          COMPRESSORS.has(unpacker.type),
        );
        if (verdict.status !== 'clean') return verdict;
      }
    } catch (e) {
      if (e instanceof UnpackLimitError) throw new LimitHit(e.limit);
      if (e instanceof UnpackError) {
        // A broken container was still matched as raw bytes above; what it holds cannot be reached.
        this.logger.info({ location, code: e.code, reason: e.message }, 'container not fully unpacked');
        return { status: 'clean' };
      }
      throw e;
    }
    return { status: 'clean' };
  }

  private async scanEntry(
    state: EngineState,
    data: AsyncIterable<Buffer>,
    location: string[],
    depth: number,
    budget: ScanBudget,
    viaCompressor: boolean,
  ): Promise<Verdict> {
    // An entry is matched, never looked up by content: no SHA-256 pass over what was unpacked.
    const spool = new Spool({
      dir: this.options.spoolDir,
      memoryLimit: this.options.spoolMemory,
      digest: false,
    });
    try {
      try {
        for await (const chunk of data) {
          if (budget.signal.aborted) throw new ScanError('ERR_SCAN_ABORTED', 'scan aborted');
          await spool.write(chunk);
          if (spool.size > this.limits.maxFileSize) throw new LimitHit('MaxFileSize');
        }
      } catch (e) {
        if (e instanceof UnpackLimitError) throw new LimitHit(e.limit);
        if (!(e instanceof UnpackError)) throw e;
        // Corrupt entry: scan what was recovered before the damage.
        this.logger.info(
          { location, code: e.code },
          'entry truncated or corrupt; scanning what was recovered',
        );
      }
      const { source } = await spool.finish();
      return await this.scanObject(state, source, location, depth + 1, budget, viaCompressor);
    } finally {
      await spool.dispose();
    }
  }
}
