/**
 * The verdict cache shared by several scangate processes through Redis (DESIGN 7: "verdict cache in
 * Redis"), layered under each process's memory LRU. Keys are prefix + database key (version + digest of what was loaded) + SHA-256, so a
 * database reload never reads an old verdict and no sweep is needed (entries expire by TTL). Redis is
 * an accelerator only: an unreachable, slow or misbehaving Redis is a cache miss, never a failed scan.
 */
import type { EngineConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { MemoryVerdictCache, type VerdictCache } from './cache.js';
import { parseRedisUrl, RespClient, RespError } from './cache-resp.js';
import type { Verdict } from './types.js';

export interface RedisCacheOptions {
  url: string;
  ttlMs: number;
  prefix: string;
  /** A call slower than this is a miss. */
  timeoutMs: number;
  logger?: Logger;
}

export class RedisVerdictCache implements VerdictCache {
  private readonly client: RespClient;
  private hits = 0;
  private misses = 0;
  private failures = 0;
  private lastWarn = 0;

  constructor(private readonly o: RedisCacheOptions) {
    this.client = new RespClient(parseRedisUrl(o.url));
  }

  private key(dbVersion: string, sha256: string): string {
    return `${this.o.prefix}${dbVersion}:${sha256}`;
  }

  async get(dbVersion: string, sha256: string): Promise<Verdict | undefined> {
    const r = await this.call(['GET', this.key(dbVersion, sha256)]);
    const v = Buffer.isBuffer(r) ? decodeVerdict(r.toString('utf8')) : undefined;
    if (v) this.hits++;
    else this.misses++;
    return v;
  }

  async set(dbVersion: string, sha256: string, verdict: Verdict): Promise<void> {
    if (verdict.status === 'error') return;
    await this.call([
      'SET',
      this.key(dbVersion, sha256),
      JSON.stringify(verdict),
      'PX',
      String(this.o.ttlMs),
    ]);
  }

  /** Nothing to drop: a new database has a new version, hence new keys; old ones expire. */
  async clear(): Promise<void> {}

  stats() {
    return { hits: this.hits, misses: this.misses, size: 0, failures: this.failures };
  }

  async ping(): Promise<boolean> {
    return (await this.call(['PING'])) === 'PONG';
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  private async call(args: string[]): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = await Promise.race([
        this.client.command(args),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.o.timeoutMs} ms`)),
            this.o.timeoutMs,
          );
          timer.unref();
        }),
      ]);
      if (r instanceof RespError) throw r;
      return r;
    } catch (e) {
      this.failures++;
      // One warning per 30 s: a Redis outage must not flood the log at scan rate.
      if (Date.now() - this.lastWarn > 30_000) {
        this.lastWarn = Date.now();
        this.o.logger?.warn(
          { err: (e as Error).message, op: args[0] },
          'redis verdict cache unavailable; scanning without it',
        );
      }
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Only well-formed clean/infected verdicts are believed; anything else in Redis is a miss. */
export function decodeVerdict(text: string): Verdict | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    if (v.status === 'clean') return { status: 'clean' };
    if (
      v.status === 'infected' &&
      typeof v.signature === 'string' &&
      Array.isArray(v.location) &&
      v.location.every((x) => typeof x === 'string')
    )
      return { status: 'infected', signature: v.signature, location: v.location as string[] };
  } catch {}
  return undefined;
}

/** Memory first, then Redis (a Redis hit is copied into memory); writes go to both. */
export class TieredVerdictCache implements VerdictCache {
  constructor(
    readonly memory: MemoryVerdictCache,
    readonly shared: RedisVerdictCache,
  ) {}

  async get(dbVersion: string, sha256: string): Promise<Verdict | undefined> {
    const local = await this.memory.get(dbVersion, sha256);
    if (local) return local;
    const remote = await this.shared.get(dbVersion, sha256);
    if (remote) await this.memory.set(dbVersion, sha256, remote);
    return remote;
  }

  async set(dbVersion: string, sha256: string, verdict: Verdict): Promise<void> {
    await this.memory.set(dbVersion, sha256, verdict);
    await this.shared.set(dbVersion, sha256, verdict);
  }

  async clear(): Promise<void> {
    await this.memory.clear();
    await this.shared.clear();
  }

  /** A hit is a hit from either level; a miss is a miss of both (the scans that had to run). */
  stats() {
    const m = this.memory.stats();
    const r = this.shared.stats();
    return {
      hits: m.hits + r.hits,
      misses: r.misses,
      size: m.size,
      sharedHits: r.hits,
      sharedFailures: r.failures,
    };
  }

  async close(): Promise<void> {
    await this.shared.close();
  }
}

/** The cache `engine.cache` asks for: the memory LRU, with Redis under it when `redis` is set. */
export function createVerdictCache(cfg: EngineConfig['cache'], logger?: Logger): VerdictCache {
  const memory = new MemoryVerdictCache(cfg.entries);
  if (!cfg.redis) return memory;
  return new TieredVerdictCache(
    memory,
    new RedisVerdictCache({
      url: cfg.redis,
      ttlMs: cfg.redisTtl,
      prefix: cfg.redisPrefix,
      timeoutMs: cfg.redisTimeout,
      logger,
    }),
  );
}
