/**
 * Assembles a running gateway from a Config: engine, TLS runtime, event sinks, one service per
 * listener, the admin listener. Owned by `scangate run` and by integration tests, which start it
 * in-process.
 *
 * Reload (SIGHUP) builds a new *generation* — configuration, TLS runtime (CA and trust files
 * re-read), engine (signatures re-read), services — and hands each listening socket over to it
 * (net/listener.ts), so the port never closes. New connections get the new generation; connections
 * already open finish on the old one, which closes once they have (or at drain.reloadTimeout).
 * A service that can take its new config in place (RunningService.reloadInPlace) is kept instead.
 */

import { join } from 'node:path';
import { type EventStore, openConfiguredEventStore } from './admin/event-store-types.js';
import { type EventSink, FanoutEventSink, LogEventSink } from './admin/events.js';
import { EventFeed } from './admin/feed.js';
import { MeteredScanner, MetricsEventSink } from './admin/instrument.js';
import { describeListener, registry, reloads } from './admin/metrics.js';
import { registerRuntimeMetrics, spoolUsage } from './admin/runtime-metrics.js';
import { type AdminServer, type AdminStatus, type ListenerState, startAdmin } from './admin/server.js';
import { type AdminToken, loadOrCreateToken } from './admin/token.js';
import { checkUpstream, fixedUpstream } from './admin/upstream-check.js';
import type { Config, ListenerConfig } from './config/schema.js';
import type { VerdictCache } from './engine/cache.js';
import { createVerdictCache } from './engine/cache-redis.js';
import { createScanner } from './engine/index.js';
import { BuiltinScanner } from './engine/scanner.js';
import type { Scanner } from './engine/types.js';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';
import { beginHandover, endHandover } from './net/listener.js';
import type { RunningService, ServiceDeps } from './net/service.js';
import type { MessagePolicy } from './protocols/smtp/policy.js';
import type { RegistryService, RunningRegistry } from './registry/index.js';
import type { CertificateAuthority } from './tls/ca.js';
import { createTlsRuntime, type TlsRuntime } from './tls/runtime.js';

export interface Gateway {
  /** The current generation's state (it changes on reload). */
  readonly config: Config;
  readonly scanner: Scanner;
  readonly ca: CertificateAuthority;
  readonly tls: TlsRuntime;
  readonly services: RunningService[];
  readonly admin: AdminServer | null;
  readonly adminToken: AdminToken | null;
  /** Latest events in memory (the dashboard's live feed). */
  readonly feed: EventFeed;
  readonly store: EventStore | null;
  /** The anti-phishing mail registry when `registry` is configured (README "Anti-phishing registry"). */
  readonly mailRegistry: RunningRegistry | null;
  banner(): string[];
  status(): AdminStatus;
  /** status() with every subsystem's summary read. */
  fullStatus(): Promise<AdminStatus>;
  /** Adds a subsystem's one-glance numbers to the dashboard (quarantine, registry). */
  addSummary(name: string, read: () => Promise<Record<string, unknown>>): void;
  /**
   * Starts a new generation from `next` (default: the current config, re-reading every file it
   * names). Rejects, keeping the running state, when the engine or TLS runtime cannot be built.
   * `drained` resolves when the previous generation's connections have all finished.
   */
  reload(next?: Config): Promise<{ drained: Promise<void> }>;
  /** Stops accepting, lets sessions finish until the deadline, then closes everything. */
  close(deadlineMs?: number): Promise<void>;
}

export interface GatewayOptions {
  /** Extra event sinks (tests, the dashboard, the cluster primary's relay). */
  events?: EventSink[];
  /** Start the admin listener and event store when the config names them (default true; cluster workers: false). */
  admin?: boolean;
  /** The verdict cache the engine uses (cluster workers pass a shared one). */
  cache?: VerdictCache;
}

/**
 * Protocol services are added here as they are built (issue tracker: HTTPS, SMTP, FTP, tunnel,
 * clamd, ICAP). A listener naming one that is not in this build is refused with its key path.
 */
type GatewayDeps = ServiceDeps & { tls: TlsRuntime; messagePolicies?: readonly MessagePolicy[] };

const SERVICES: Partial<
  Record<ListenerConfig['protocol'], (l: ListenerConfig, deps: GatewayDeps) => Promise<RunningService>>
> = {
  http: async (l, deps) => {
    const { startHttpListener } = await import('./protocols/http/index.js');
    return startHttpListener(l as Extract<ListenerConfig, { protocol: 'http' }>, deps);
  },
  smtp: async (l, deps) => {
    const { startSmtpListener } = await import('./protocols/smtp/index.js');
    return startSmtpListener(l as Extract<ListenerConfig, { protocol: 'smtp' }>, deps);
  },
  ftp: async (l, deps) => {
    const { startFtpListener } = await import('./protocols/ftp/index.js');
    return startFtpListener(l as Extract<ListenerConfig, { protocol: 'ftp' }>, deps);
  },
  clamd: async (l, deps) => {
    const { startClamdListener } = await import('./protocols/clamd/index.js');
    return startClamdListener(l as Extract<ListenerConfig, { protocol: 'clamd' }>, deps);
  },
  icap: async (l, deps) => {
    const { startIcapListener } = await import('./protocols/icap/index.js');
    return startIcapListener(l as Extract<ListenerConfig, { protocol: 'icap' }>, deps);
  },
  tunnel: async (l, deps) => {
    const { startTunnelListener } = await import('./protocols/tunnel/index.js');
    return startTunnelListener(l as Extract<ListenerConfig, { protocol: 'tunnel' }>, deps);
  },
};

async function startService(l: ListenerConfig, deps: GatewayDeps): Promise<RunningService> {
  const start = SERVICES[l.protocol];
  if (!start)
    throw new ConfigError(
      `listeners.${l.name}.protocol`,
      `protocol "${l.protocol}" is not available in this build`,
    );
  return start(l, deps);
}

interface Generation {
  config: Config;
  scanner: MeteredScanner;
  tls: TlsRuntime;
  services: RunningService[];
  unavailable: { name: string; protocol: string; reason: string }[];
}

/** The engine settings other than the signature list: when equal, a reload swaps the database in place. */
function engineShape(c: Config): string {
  return JSON.stringify({ ...c.engine, signatures: null });
}

async function startServices(
  gen: Generation,
  deps: GatewayDeps,
  logger: Logger,
  previous: readonly RunningService[] = [],
): Promise<void> {
  for (const l of gen.config.listeners) {
    describeListener(l.name, l.protocol);
    try {
      // A listener that can take its new config in place (a tunnel whose only change is its TLS
      // files' content) keeps its long-lived connections instead of draining them at reloadTimeout.
      const same = previous.find((s) => s.name === l.name);
      if (same?.reloadInPlace && (await same.reloadInPlace(l, deps))) {
        gen.services.push(same);
        continue;
      }
      gen.services.push(await startService(l, deps));
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      // Keep the rest running; readiness reports what is missing.
      gen.unavailable.push({ name: l.name, protocol: l.protocol, reason: e.message });
      logger.error({ listener: l.name, reason: e.message }, 'listener not started');
    }
  }
}

function addressText(a: RunningService['address']): string {
  return typeof a === 'string'
    ? a
    : a.family === 'IPv6'
      ? `[${a.address}]:${a.port}`
      : `${a.address}:${a.port}`;
}

export async function startGateway(
  config: Config,
  logger: Logger,
  options: GatewayOptions = {},
): Promise<Gateway> {
  const withAdmin = options.admin !== false;
  const feed = new EventFeed();
  const store = withAdmin ? await openConfiguredEventStore(config, logger) : null;
  const events = new FanoutEventSink([
    new LogEventSink(logger),
    new MetricsEventSink(),
    feed,
    ...(store ? [store] : []),
    ...(options.events ?? []),
  ]);
  // One cache per engine shape: a reload that changes engine settings gets a fresh one (and the old
  // scanner closes its own, e.g. the Redis connection); cluster workers pass theirs in.
  const newCache = (c: Config) => options.cache ?? createVerdictCache(c.engine.cache, logger);
  let cache = newCache(config);
  // The mail registry is served where the admin is (once per host: here, or the cluster primary);
  // its SMTP policies (inbound check, outbound stamping) use it in this process.
  let mailRegistry: RunningRegistry | null = null;
  let messagePolicies: MessagePolicy[] = [];
  let closeRegistry = async () => {};
  if (config.registry) {
    const reg = await import('./registry/index.js');
    // A cluster worker (no admin): the primary serves the registry; the worker's policies use its
    // database directly, and only when some listener needs them.
    const g = config.registry.gateway;
    let opened: { service: RegistryService; close(): Promise<void> } | null = null;
    if (withAdmin) {
      mailRegistry = await reg.startRegistry(config.registry, config.dataDir, logger);
      opened = mailRegistry;
    } else if (g.inbound.length || g.outbound.length)
      opened = await reg.openRegistryService(config.registry, config.dataDir, logger);
    if (opened) {
      closeRegistry = () => opened.close();
      try {
        messagePolicies = await reg.registryPolicies(opened.service, config.registry, logger, events);
      } catch (e) {
        await opened.close();
        throw e;
      }
    }
  }

  const newScanner = async (c: Config, withCache: VerdictCache) =>
    new MeteredScanner(await createScanner(c.engine, { dataDir: c.dataDir, logger, cache: withCache }));
  let gen: Generation = {
    config,
    scanner: await newScanner(config, cache),
    tls: await createTlsRuntime(config, logger, events),
    services: [],
    unavailable: [],
  };
  const summaries = new Map<string, () => Promise<Record<string, unknown>>>();
  if (mailRegistry) {
    const reg = mailRegistry;
    summaries.set('registry', async () => ({ url: reg.publicUrl }));
  }
  // What the on-access agent (a separate process) has put in the default quarantine folder.
  summaries.set('quarantine', async () => {
    const q = await spoolUsage(join(config.dataDir, 'quarantine'), '.bin');
    return q.files ? { files: q.files, bytes: q.bytes } : {};
  });
  let admin: AdminServer | null = null;
  let adminToken: AdminToken | null = null;
  let draining = false;
  const deps = (g: Generation): GatewayDeps => ({
    config: g.config,
    scanner: g.scanner,
    logger,
    events,
    tls: g.tls,
    messagePolicies,
  });

  registerRuntimeMetrics({
    scanner: () => gen.scanner,
    cache: () => (gen.config.engine.backend === 'builtin' ? cache : null),
    listeners: () => gen.services.length,
    spoolDir: join(config.dataDir, 'spool'),
  });

  const status = (): AdminStatus => {
    const v = gen.scanner.version();
    const listeners: ListenerState[] = [
      ...gen.services.map((s) => ({
        name: s.name,
        protocol: s.protocol,
        address: addressText(s.address),
        state: 'listening' as const,
      })),
      ...gen.unavailable.map((u) => ({ ...u, address: '', state: 'not started' as const })),
    ];
    return {
      ready: !draining && v.signatures > 0 && gen.services.length > 0 && gen.unavailable.length === 0,
      engine: v,
      workers: 1,
      listeners,
      summaries: {},
    };
  };
  const fullStatus = async (): Promise<AdminStatus> => {
    const s = status();
    // Readiness includes reaching each listener's fixed upstream (mail server, backend, origin).
    await Promise.all(
      s.listeners.map(async (l) => {
        const cfg = gen.config.listeners.find((c) => c.name === l.name);
        const upstream = cfg ? fixedUpstream(cfg) : null;
        if (!upstream || l.state !== 'listening') return;
        const u = await checkUpstream(upstream);
        l.upstream = u.reachable ? 'reachable' : `unreachable (${upstream}: ${u.error})`;
        if (!u.reachable) s.ready = false;
      }),
    );
    for (const [name, read] of summaries) {
      try {
        const summary = await read();
        if (Object.keys(summary).length) s.summaries[name] = summary;
      } catch (e) {
        s.summaries[name] = { error: (e as Error).message };
      }
    }
    return s;
  };

  try {
    await startServices(gen, deps(gen), logger);
    if (withAdmin && config.admin) {
      adminToken = await loadOrCreateToken(config.dataDir, config.admin.token);
      admin = await startAdmin({
        listen: config.admin.listen,
        allow: config.admin.allow,
        token: adminToken.value,
        source: { collect: async () => registry, status: fullStatus },
        feed,
        store,
        logger,
      });
    }
  } catch (e) {
    await Promise.allSettled(gen.services.map((s) => s.close(0)));
    await admin?.close();
    await gen.scanner.close();
    await store?.close();
    await closeRegistry();
    throw e;
  }
  logger.info(
    {
      listeners: gen.services.map((s) => ({ name: s.name, protocol: s.protocol, address: s.address })),
      engine: gen.scanner.version(),
    },
    'scangate running',
  );

  let reloading: Promise<unknown> = Promise.resolve();
  const oldGenerations = new Set<Promise<void>>();

  async function reloadOnce(next: Config): Promise<{ drained: Promise<void> }> {
    const prev = gen;
    if (next.admin?.listen !== prev.config.admin?.listen || next.dataDir !== prev.config.dataDir)
      logger.warn('admin.listen and dataDir changes take effect at the next restart');
    // 1. Everything that can fail, before anything changes hands.
    const sameEngine =
      prev.scanner.inner instanceof BuiltinScanner && engineShape(next) === engineShape(prev.config);
    let scanner = prev.scanner;
    let nextCache = cache;
    let engine: Awaited<ReturnType<typeof import('./engine/index.js').loadEngine>> | null = null;
    if (sameEngine) {
      const { loadEngine } = await import('./engine/index.js');
      engine = await loadEngine(next.engine.signatures);
    } else {
      nextCache = newCache(next);
      scanner = await newScanner(next, nextCache);
    }
    let tls: TlsRuntime;
    try {
      tls = await createTlsRuntime(next, logger, events);
    } catch (e) {
      if (scanner !== prev.scanner) await scanner.close();
      throw e;
    }
    if (engine) {
      // Scans already running finish on the database they started with.
      await (prev.scanner.inner as BuiltinScanner).swap(engine);
      logger.info({ version: engine.version, signatures: engine.signatures }, 'signatures reloaded');
    }
    cache = nextCache;
    // Hosts learned as pinned stay passed through.
    for (const h of prev.tls.passthrough.learnedHosts()) tls.passthrough.learn(h.host, h.reason);
    // 2. The new generation takes the sockets over.
    const fresh: Generation = { config: next, scanner, tls, services: [], unavailable: [] };
    beginHandover();
    try {
      await startServices(fresh, deps(fresh), logger, prev.services);
    } finally {
      endHandover();
    }
    gen = fresh;
    // 3. The old generation finishes what it has, then goes.
    const drained = (async () => {
      const replaced = prev.services.filter((s) => !fresh.services.includes(s));
      await Promise.allSettled(replaced.map((s) => s.close(next.drain.reloadTimeout)));
      if (prev.scanner !== gen.scanner) await prev.scanner.close();
    })();
    oldGenerations.add(drained);
    void drained.finally(() => oldGenerations.delete(drained));
    logger.info(
      { listeners: fresh.services.length, notStarted: fresh.unavailable.length, engine: scanner.version() },
      'configuration reloaded',
    );
    return { drained };
  }

  return {
    get config() {
      return gen.config;
    },
    get scanner() {
      return gen.scanner;
    },
    get ca() {
      return gen.tls.ca;
    },
    get tls() {
      return gen.tls;
    },
    get services() {
      return gen.services;
    },
    admin,
    adminToken,
    feed,
    store,
    mailRegistry,
    status,
    fullStatus,
    addSummary(name, read) {
      summaries.set(name, read);
    },
    banner() {
      const v = gen.scanner.version();
      const lines = [
        `scangate: engine ${v.engine}, database ${v.databaseVersion}, ${v.signatures} signatures`,
      ];
      for (const s of gen.services)
        lines.push(`scangate: ${s.name} (${s.protocol}) listening on ${addressText(s.address)}`);
      if (admin && adminToken) {
        const url = `http://${addressText({ ...admin.address })}/`;
        lines.push(`scangate: admin on ${url} (/healthz /readyz /metrics, dashboard at /)`);
        if (adminToken.created) lines.push(`scangate: admin token (shown once): ${adminToken.value}`);
        lines.push(
          adminToken.file
            ? `scangate: admin token in ${adminToken.file}; open ${url}?token=TOKEN`
            : 'scangate: admin token from admin.token in the configuration',
        );
      }
      if (mailRegistry)
        lines.push(`scangate: mail registry on ${mailRegistry.url}/ (query page; API /api/v1)`);
      for (const u of gen.unavailable) lines.push(`scangate: NOT STARTED: ${u.reason}`);
      const ca = gen.tls.ca;
      lines.push(`scangate: interception CA ${ca.files.cert} (SHA-256 ${ca.fingerprint256})`);
      lines.push(
        `scangate: clients must trust it, e.g. curl --cacert ${ca.files.cert} (README: "Trusting the CA")`,
      );
      return lines;
    },
    reload(next = gen.config) {
      // One reload at a time: a second SIGHUP waits for the first.
      const run = reloading.then(() => reloadOnce(next));
      reloading = run.catch(() => {});
      return run.then(
        (r) => {
          reloads.inc({ result: 'ok' });
          return r;
        },
        (e: unknown) => {
          reloads.inc({ result: 'failed' });
          throw e;
        },
      );
    },
    async close(deadlineMs = gen.config.drain.timeout) {
      draining = true;
      await reloading;
      await Promise.allSettled([
        ...gen.services.map((s) => s.close(deadlineMs)),
        ...[...oldGenerations].map((d) =>
          Promise.race([d, new Promise((r) => setTimeout(r, deadlineMs).unref())]),
        ),
      ]);
      await store?.close();
      await closeRegistry();
      await admin?.close();
      await gen.scanner.close();
    },
  };
}
