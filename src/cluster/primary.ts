/**
 * The cluster primary (`workers: auto|N`): forks the workers (node:cluster shares every listening
 * socket among them, round-robin), and keeps what must be one per machine — the admin listener,
 * the event store and live feed, the relay of verdicts between worker caches. Metrics are every
 * worker's registry summed by prom-client's AggregatorRegistry. SIGHUP reloads every worker (after
 * checking the file loads); SIGTERM drains every worker and exits 0 once all have.
 */
import cluster, { type Worker } from 'node:cluster';
import { rm } from 'node:fs/promises';
import { AggregatorRegistry, Gauge, type Registry } from 'prom-client';
import { openConfiguredEventStore } from '../admin/event-store-types.js';
import { FanoutEventSink } from '../admin/events.js';
import { EventFeed } from '../admin/feed.js';
import { registry } from '../admin/metrics.js';
import { type AdminServer, type AdminStatus, startAdmin } from '../admin/server.js';
import { loadOrCreateToken } from '../admin/token.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { CertificateAuthority } from '../tls/ca.js';
import { clusterTicketEnv } from '../tls/ticket-keys.js';
import { parseAddress } from '../util/units.js';
import { isSgMessage, type PrimaryMessage, type WorkerMessage } from './messages.js';

const REQUEST_TIMEOUT_MS = 5_000;

interface Pending {
  replies: unknown[];
  waiting: number;
  done: (replies: unknown[]) => void;
}

export async function runPrimary(
  config: Config,
  logger: Logger,
  load: () => Promise<Config>,
  count: number,
): Promise<void> {
  cluster.schedulingPolicy = cluster.SCHED_RR;
  // Created once here, so workers starting together never race to create two different CAs.
  await CertificateAuthority.loadOrCreate({
    dataDir: config.dataDir,
    cert: config.tls.ca.cert,
    key: config.tls.ca.key,
    logger,
  });
  await removeStaleUnixSockets(config, null);

  const feed = new EventFeed();
  const store = await openConfiguredEventStore(config, logger);
  // The mail registry is one per machine too (its HTTP side, mail, reminders); workers' SMTP
  // policies open its database, which it has migrated before they start.
  const mailRegistry = config.registry
    ? await (await import('../registry/index.js')).startRegistry(config.registry, config.dataDir, logger)
    : null;
  const sink = new FanoutEventSink([feed, ...(store ? [store] : [])]);

  let epoch = 0;
  let stopping = false;
  const ready = new Map<number, { status: AdminStatus; banner: string[] }>();
  const everReady = new Set<number>();
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let current = config;

  const alive = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && !w.isDead());
  new Gauge({
    name: 'scangate_workers',
    help: 'Worker processes alive',
    registers: [registry],
    collect() {
      this.set(alive().length);
    },
  });

  function ask(kind: 'sg:metrics?' | 'sg:status?'): Promise<unknown[]> {
    const workers = alive().filter((w) => ready.has(w.id));
    if (workers.length === 0) return Promise.resolve([]);
    const id = nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(), REQUEST_TIMEOUT_MS);
      const finish = () => {
        clearTimeout(timer);
        const p = pending.get(id);
        pending.delete(id);
        resolve(p?.replies ?? []);
      };
      pending.set(id, { replies: [], waiting: workers.length, done: finish });
      for (const w of workers) w.send({ t: kind, id } satisfies PrimaryMessage);
    });
  }

  function reply(id: number, value: unknown): void {
    const p = pending.get(id);
    if (!p) return;
    p.replies.push(value);
    if (--p.waiting === 0) p.done(p.replies);
  }

  function onMessage(worker: Worker, m: unknown): void {
    if (!isSgMessage(m)) return;
    const msg = m as WorkerMessage;
    switch (msg.t) {
      case 'sg:event':
        sink.emit(msg.event);
        break;
      case 'sg:cache-set':
        for (const w of alive()) if (w !== worker) w.send(msg);
        break;
      case 'sg:metrics':
        reply(msg.id, msg.metrics);
        break;
      case 'sg:status':
        reply(msg.id, msg.status);
        break;
      case 'sg:ready':
        ready.set(worker.id, { status: msg.status, banner: msg.banner });
        everReady.add(worker.id);
        if (ready.size === count && !bannerShown) showBanner();
        break;
      case 'sg:reloaded':
        if (msg.error) logger.error({ worker: worker.id, err: msg.error }, 'worker reload failed');
        break;
    }
  }

  function fork(): Worker {
    const w = cluster.fork({
      ...clusterTicketEnv(),
      SCANGATE_WORKER_ID: String(Object.keys(cluster.workers ?? {}).length + 1),
      SCANGATE_RELOAD_EPOCH: String(epoch),
    });
    w.on('message', (m) => onMessage(w, m));
    return w;
  }

  // A worker that dies before it ever served (bad certificate, port taken) would die again: after
  // three such deaths in a row the primary gives up and exits 1, so the init system sees the failure.
  let startupFailures = 0;
  cluster.on('exit', (w, code, signal) => {
    const wasReady = everReady.has(w.id);
    ready.delete(w.id);
    if (stopping) return;
    startupFailures = wasReady ? 0 : startupFailures + 1;
    if (startupFailures >= 3) {
      logger.fatal({ code, signal }, 'workers keep failing at startup; exiting');
      logger.flush?.();
      for (const other of alive()) other.process.kill('SIGKILL');
      process.exit(1);
    }
    logger.error({ worker: w.id, pid: w.process.pid, code, signal }, 'worker died; starting another');
    setTimeout(() => {
      if (!stopping) fork();
    }, 1000);
  });

  const token = config.admin ? await loadOrCreateToken(config.dataDir, config.admin.token) : null;
  let admin: AdminServer | null = null;
  if (config.admin && token) {
    admin = await startAdmin({
      listen: config.admin.listen,
      allow: config.admin.allow,
      token: token.value,
      feed,
      store,
      logger,
      source: {
        collect: async () =>
          aggregate((await ask('sg:metrics?')) as Parameters<typeof AggregatorRegistry.aggregate>[0]),
        status: async () => mergeStatus((await ask('sg:status?')) as AdminStatus[], count, stopping),
      },
    });
  }

  let bannerShown = false;
  function showBanner(): void {
    bannerShown = true;
    const first = [...ready.values()][0];
    const lines = [`scangate: ${count} workers (node:cluster, listeners shared)`, ...(first?.banner ?? [])];
    if (admin && token) {
      const url = `http://${admin.address.family === 'IPv6' ? `[${admin.address.address}]` : admin.address.address}:${admin.address.port}/`;
      lines.push(`scangate: admin on ${url} (/healthz /readyz /metrics, dashboard at /)`);
      if (token.created) lines.push(`scangate: admin token (shown once): ${token.value}`);
      if (token.file) lines.push(`scangate: admin token in ${token.file}; open ${url}?token=TOKEN`);
    }
    if (mailRegistry) lines.push(`scangate: mail registry on ${mailRegistry.url}/ (query page; API /api/v1)`);
    for (const l of lines) process.stdout.write(`${l}\n`);
  }

  for (let i = 0; i < count; i++) fork();

  process.on('SIGHUP', () => {
    load()
      .then(async (next) => {
        if (next.workers !== current.workers)
          logger.warn('a change of `workers` takes effect at the next restart');
        await removeStaleUnixSockets(next, current);
        current = next;
        epoch++;
        logger.info({ epoch }, 'SIGHUP: reloading every worker');
        for (const w of alive()) w.send({ t: 'sg:reload', epoch } satisfies PrimaryMessage);
      })
      .catch((e: Error) => logger.error({ err: e.message }, 'reload failed; keeping the running state'));
  });

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const deadlineMs = current.drain.timeout;
    logger.info({ signal, workers: alive().length }, 'draining every worker');
    for (const w of alive()) w.send({ t: 'sg:drain', deadlineMs } satisfies PrimaryMessage);
    // A worker that outlives its own deadline (stuck) is killed a little after it.
    const kill = setTimeout(() => {
      for (const w of alive()) w.process.kill('SIGKILL');
    }, deadlineMs + 5_000);
    kill.unref();
    const check = async () => {
      if (alive().length > 0) return;
      clearTimeout(kill);
      await store?.close();
      await mailRegistry?.close();
      await admin?.close();
      logger.info('all workers drained; exiting');
      logger.flush?.();
      process.exit(0);
    };
    cluster.on('exit', () => void check());
    void check();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** Sums the workers' registries; the hit ratio is recomputed from the summed hits and misses. */
async function aggregate(perWorker: Parameters<typeof AggregatorRegistry.aggregate>[0]): Promise<Registry> {
  // The primary's own figures (workers alive, its process) join the sum.
  const all = [...perWorker, (await registry.getMetricsAsJSON()) as (typeof perWorker)[number]];
  const reg = AggregatorRegistry.aggregate(all);
  const metrics = perWorker.flat() as unknown as { name: string; values: { value: number }[] }[];
  const total = (name: string) =>
    metrics
      .filter((m) => m.name === name)
      .flatMap((m) => m.values)
      .reduce((a, v) => a + v.value, 0);
  const hits = total('scangate_verdict_cache_hits_total');
  const misses = total('scangate_verdict_cache_misses_total');
  const name = 'scangate_verdict_cache_hit_ratio';
  const summed = reg.getSingleMetric(name);
  if (summed) {
    reg.removeSingleMetric(name);
    const ratio = new Gauge({ name, help: (summed as unknown as { help: string }).help, registers: [] });
    ratio.set(hits + misses ? hits / (hits + misses) : 0);
    reg.registerMetric(ratio);
  }
  return reg as Registry;
}

function mergeStatus(statuses: AdminStatus[], count: number, stopping: boolean): AdminStatus {
  const first = statuses[0];
  return {
    ready: !stopping && statuses.length === count && statuses.every((s) => s.ready),
    engine: first?.engine ?? null,
    workers: statuses.length,
    listeners: first?.listeners ?? [],
    summaries: first?.summaries ?? {},
  };
}

/**
 * Workers never unlink a unix socket path (a second worker would unlink the socket the primary
 * bound for the first): the primary clears stale files once, for paths not already bound.
 */
async function removeStaleUnixSockets(next: Config, prev: Config | null): Promise<void> {
  const bound = new Set(prev?.listeners.map((l) => l.listen) ?? []);
  for (const l of next.listeners) {
    if (bound.has(l.listen)) continue;
    try {
      const a = parseAddress(l.listen);
      if ('path' in a) await rm(a.path, { force: true });
    } catch {
      // an invalid address is reported by the worker that tries it
    }
  }
}
