/**
 * What every clamd connection of one listener shares: the scanner, the scan slots, counters, the
 * VERSION text and RELOAD. RELOAD (and SIGHUP through the gateway) loads the signatures again and
 * swaps the builtin engine whole: scans in flight finish on the engine they started with, the
 * memory cache is dropped, and keys in Redis carry the database version so old verdicts go unread.
 */
import type { EventSink } from '../../admin/events.js';
import type { ClamdListenerConfig, Config } from '../../config/schema.js';
import { BuiltinScanner } from '../../engine/scanner.js';
import type { Scanner } from '../../engine/types.js';
import type { Logger } from '../../logger.js';
import type { DaemonStats, VersionInfo } from './replies.js';
import { Slots } from './slots.js';

export interface ClamdContext {
  cfg: ClamdListenerConfig;
  scanner: Scanner;
  slots: Slots;
  log: Logger;
  events: EventSink;
  version(): VersionInfo;
  stats(): DaemonStats;
  /** Starts a reload in the background (clamd answers RELOADING before it is done). */
  reload(): void;
  readonly connections: { open: number };
}

export interface ClamdDeps {
  config: Config;
  scanner: Scanner;
  logger: Logger;
  events: EventSink;
}

export const ENGINE_NAME = 'scangate-0.1.0';

/** The builtin engine behind `scanner`, also through a wrapper that keeps it as `inner` (metering). */
export function builtinEngine(scanner: Scanner): BuiltinScanner | null {
  if (scanner instanceof BuiltinScanner) return scanner;
  const inner = (scanner as { inner?: unknown }).inner;
  return inner instanceof BuiltinScanner ? inner : null;
}

export function createClamdContext(cfg: ClamdListenerConfig, deps: ClamdDeps): ClamdContext {
  const slots = new Slots(cfg.maxScans);
  const log = deps.logger.child({ listener: cfg.name, protocol: 'clamd' });
  const started = new Date();
  const connections = { open: 0 };
  let reloading: Promise<void> | null = null;
  return {
    cfg,
    scanner: deps.scanner,
    slots,
    log,
    events: deps.events,
    connections,
    version() {
      const v = deps.scanner.version();
      // Clients parse the middle field as a number: a numbered (CVD) database shows, a local one does not.
      const n = /^\d+$/.test(v.databaseVersion) ? Number(v.databaseVersion) : 0;
      return { engine: ENGINE_NAME, dbVersion: n, dbTime: started };
    },
    stats() {
      const engine = builtinEngine(deps.scanner);
      const cache = engine?.cacheStats();
      return {
        live: slots.live,
        idle: slots.max - slots.live,
        max: slots.max,
        queued: slots.queued,
        scans: engine?.counters.scans ?? 0,
        cacheHits: cache?.hits ?? 0,
        cacheMisses: cache?.misses ?? 0,
        connections: connections.open,
      };
    },
    reload() {
      const scanner = builtinEngine(deps.scanner);
      if (!scanner || reloading) return;
      reloading = (async () => {
        const { loadEngine } = await import('../../engine/index.js');
        const engine = await loadEngine(deps.config.engine.signatures);
        await scanner.swap(engine);
        log.info({ version: engine.version, signatures: engine.signatures }, 'signatures reloaded (RELOAD)');
      })()
        .catch((e: Error) => log.error({ err: e.message }, 'reload failed; keeping the running engine'))
        .finally(() => {
          reloading = null;
        });
    },
  };
}
