/**
 * Engine entry points: build the configured Scanner (builtin or clamd) with its verdict cache.
 */
import { join } from 'node:path';
import { type EngineConfig, type EngineLimits, engineLimitsSchema } from '../config/schema.js';
import { type Logger, silentLogger } from '../logger.js';
import { MemoryVerdictCache, type VerdictCache } from './cache.js';
import { createVerdictCache } from './cache-redis.js';
import { compileMatcher } from './match/index.js';
import { BuiltinScanner, type EngineState } from './scanner.js';
import { loadSignatures, type SignatureDb } from './signatures/index.js';
import type { Scanner } from './types.js';

export { BuiltinScanner } from './scanner.js';
export type { ScanContext, ScanInput, Scanner, Verdict } from './types.js';

/** What outlives loading: the parsed lines are dropped once compiled (they cost far more than the matcher). */
export type DatabaseSummary = Pick<
  SignatureDb,
  'version' | 'total' | 'counts' | 'unsupported' | 'buildTime' | 'versionNumber'
>;

export interface LoadedEngine extends EngineState {
  db: DatabaseSummary;
  loadMs: number;
}

/** Loads the built-in signatures plus `paths` and compiles them into a matcher. */
export async function loadEngine(paths: string[]): Promise<LoadedEngine> {
  const t0 = performance.now();
  const parsed = await loadSignatures(paths);
  const matcher = compileMatcher(parsed);
  const { version, total, counts, unsupported, buildTime, versionNumber } = parsed;
  const db: DatabaseSummary = { version, total, counts, unsupported, buildTime, versionNumber };
  return {
    db,
    matcher,
    version,
    signatures: total,
    cacheKey: `${version}-${parsed.digest.slice(0, 16)}`,
    loadMs: performance.now() - t0,
  };
}

export interface BuiltinScannerFactoryOptions {
  signatures?: string[];
  limits?: Partial<EngineLimits>;
  cacheEntries?: number;
  spoolDir?: string;
  logger?: Logger;
  /** A cache supplied by the caller (shared across workers, or read for metrics); default an LRU of cacheEntries. */
  cache?: VerdictCache;
}

export async function createBuiltinScanner(opts: BuiltinScannerFactoryOptions = {}): Promise<BuiltinScanner> {
  const engine = await loadEngine(opts.signatures ?? []);
  // opts.limits are resolved values (milliseconds, bytes): merge over the defaults, never re-parse them.
  const limits: EngineLimits = { ...engineLimitsSchema.parse({}), ...opts.limits };
  const logger = opts.logger ?? silentLogger;
  for (const u of engine.db.unsupported.slice(0, 20)) {
    logger.warn({ file: u.file, line: u.line, reason: u.reason }, 'signature not supported');
  }
  if (engine.db.unsupported.length) {
    logger.warn({ count: engine.db.unsupported.length }, 'signatures skipped as unsupported');
  }
  return new BuiltinScanner(engine, {
    limits,
    cache: opts.cache ?? new MemoryVerdictCache(opts.cacheEntries ?? 65_536),
    spoolDir: opts.spoolDir,
    logger,
  });
}

/** The Scanner named by `engine.backend`. */
export async function createScanner(
  cfg: EngineConfig,
  opts: { dataDir: string; logger?: Logger; cache?: VerdictCache },
): Promise<Scanner> {
  if (cfg.backend === 'clamd') {
    const { createClamdScanner } = await import('./backends/index.js');
    return createClamdScanner(cfg.clamd);
  }
  return createBuiltinScanner({
    signatures: cfg.signatures,
    limits: cfg.limits,
    cacheEntries: cfg.cache.entries,
    spoolDir: join(opts.dataDir, 'spool'),
    logger: opts.logger,
    // engine.cache.redis puts the shared Redis cache under the memory LRU.
    cache: opts.cache ?? createVerdictCache(cfg.cache, opts.logger),
  });
}
