/**
 * One cluster worker: the whole gateway without the admin listener and event store (the primary
 * keeps those). Its listeners share the primary's sockets (node:cluster), its events and verdicts go
 * to the primary, and it answers the primary's metrics and status requests, reloads, and drains.
 */
import type { EventSink, SecurityEvent } from '../admin/events.js';
import { registry } from '../admin/metrics.js';
import type { Config } from '../config/schema.js';
import { startGateway } from '../gateway.js';
import type { Logger } from '../logger.js';
import { adoptClusterTicketSecret } from '../tls/ticket-keys.js';
import { tuneHeapGrowth } from '../util/heap.js';
import { ClusterVerdictCache } from './cache.js';
import { isSgMessage, type PrimaryMessage, type WorkerMessage } from './messages.js';

function send(m: WorkerMessage): void {
  // The channel closes when the primary goes; then there is nobody left to tell.
  if (process.connected) process.send?.(m);
}

class RelayEventSink implements EventSink {
  emit(event: SecurityEvent): void {
    send({ t: 'sg:event', event: { time: new Date().toISOString(), ...event } });
  }
}

export async function runWorker(config: Config, logger: Logger, load: () => Promise<Config>): Promise<void> {
  adoptClusterTicketSecret();
  const log = logger.child({ worker: process.env.SCANGATE_WORKER_ID ?? String(process.pid) });
  // With Redis configured the workers already share verdicts through it; otherwise through the primary.
  const cache = config.engine.cache.redis ? null : new ClusterVerdictCache(config.engine.cache.entries, send);
  if (cache) cache.epoch = Number(process.env.SCANGATE_RELOAD_EPOCH ?? 0);
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(config, log, {
      admin: false,
      events: [new RelayEventSink()],
      ...(cache ? { cache } : {}),
    });
  } catch (e) {
    // The IPC channel would keep a failed worker alive; exit so the primary sees the failure.
    const err = e as Error & { code?: string };
    process.stderr.write(`scangate: worker: ${err.code ? `${err.code}: ` : ''}${err.message}\n`);
    process.exit(2);
  }
  tuneHeapGrowth();

  let draining = false;
  const drain = (deadlineMs?: number) => {
    if (draining) return;
    draining = true;
    gateway
      .close(deadlineMs)
      .then(() => process.exit(0))
      .catch(() => process.exit(1));
  };

  process.on('message', (m: unknown) => {
    if (!isSgMessage(m)) return;
    const msg = m as PrimaryMessage;
    switch (msg.t) {
      case 'sg:cache-set':
        cache?.receive(msg);
        break;
      case 'sg:metrics?':
        void registry.getMetricsAsJSON().then((metrics) => send({ t: 'sg:metrics', id: msg.id, metrics }));
        break;
      case 'sg:status?':
        void gateway.fullStatus().then((status) => send({ t: 'sg:status', id: msg.id, status }));
        break;
      case 'sg:reload':
        load()
          .then(async (next) => {
            if (cache) cache.epoch = msg.epoch;
            await gateway.reload(next);
            tuneHeapGrowth();
            send({ t: 'sg:reloaded', epoch: msg.epoch });
          })
          .catch((e: Error) => {
            log.error({ err: e.message }, 'reload failed; keeping the running state');
            send({ t: 'sg:reloaded', epoch: msg.epoch, error: e.message });
          });
        break;
      case 'sg:drain':
        drain(msg.deadlineMs);
        break;
    }
  });
  // The primary coordinates reloads; a SIGTERM/SIGINT reaching a worker directly (a terminal's
  // Ctrl-C, a whole-cgroup kill) drains it like the primary's request would.
  process.on('SIGHUP', () => {});
  process.on('SIGTERM', () => drain());
  process.on('SIGINT', () => drain());
  process.on('disconnect', () => drain());
  send({ t: 'sg:ready', status: gateway.status(), banner: gateway.banner() });
}
