/**
 * The mTLS long-connection gateway (listener `protocol: tunnel`, README "mTLS tunnel").
 *
 * TCP accept (client-network allow-list, connection cap, drain) → TLS 1.2/1.3 handshake with a
 * required client certificate verified against clientCa and the CRL → allow-list by CN / DNS SAN /
 * URI SAN → stream mode (one backend connection per client, optional PROXY v2) or message mode
 * (verified frames over a pool of long-lived backend connections). Every refusal is an event naming
 * its reason. A SIGHUP that leaves the listener's config as it was (reloadInPlace) and file changes
 * swap the TLS material without touching live connections.
 */

import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { countTls } from '../../admin/metrics.js';
import type { TunnelListenerConfig } from '../../config/schema.js';
import { ConfigError } from '../../errors.js';
import { UpstreamFirstConnector } from '../../net/connect.js';
import { createTcpListener } from '../../net/listener.js';
import type { RunningService, ServiceDeps } from '../../net/service.js';
import { parseAddress } from '../../util/units.js';
import { authenticate } from './auth.js';
import { BackendPool } from './backend-pool.js';
import { emitEvent, type TunnelContext } from './context.js';
import { AllowPolicy } from './identity.js';
import { MessageSession } from './message.js';
import { runStreamSession } from './stream.js';
import { readTlsMaterial, TlsMaterialReloader } from './tls-material.js';

/** Message sessions are told to go away this long before a drain deadline, so the GOAWAY can leave. */
const GOAWAY_BEFORE_DEADLINE_MS = 1_000;

export interface TunnelService extends RunningService {
  /** Re-reads certificate, key, client CA and CRL; live connections keep their session. */
  reload(): Promise<void>;
  /** Number of completed reloads (tests wait for a file-change reload with it). */
  readonly reloads: number;
  /** Message mode: backend connections currently up. */
  readonly backendReady: number;
}

function clientName(s: { remoteAddress?: string; remotePort?: number }): string {
  return `${s.remoteAddress ?? '?'}:${s.remotePort ?? 0}`;
}

export async function startTunnelListener(
  cfg: TunnelListenerConfig,
  deps: ServiceDeps,
): Promise<TunnelService> {
  const keyPath = `listeners.${cfg.name}`;
  const target = parseAddress(cfg.upstream);
  if ('path' in target) throw new ConfigError(`${keyPath}.upstream`, 'the tunnel backend must be host:port');
  const policy = new AllowPolicy(cfg.allow);
  const material = await readTlsMaterial(cfg.tls, `${keyPath}.tls`);
  const log = deps.logger.child({ listener: cfg.name, protocol: 'tunnel' });
  const shutdown = new AbortController();

  const pool =
    cfg.mode === 'message'
      ? new BackendPool({
          listener: cfg.name,
          host: target.host,
          port: target.port,
          connections: cfg.backend.connections,
          connectTimeoutMs: cfg.backend.connectTimeout,
          backoffMinMs: cfg.backend.backoffMin,
          backoffMaxMs: cfg.backend.backoffMax,
          heartbeatIntervalMs: cfg.heartbeat.interval,
          heartbeatTimeoutMs: cfg.heartbeat.timeout,
          requestTimeoutMs: cfg.backend.requestTimeout,
          queueTimeoutMs: cfg.backend.queueTimeout,
          queueLimit: cfg.backend.queueLimit,
          maxPayload: cfg.maxFrameSize,
          log,
          events: deps.events,
        }).start()
      : null;
  const ctx: TunnelContext = {
    cfg,
    log,
    events: deps.events,
    scanner: deps.scanner,
    backend: target,
    pool,
    shutdown: shutdown.signal,
  };
  const connector = new UpstreamFirstConnector({ timeoutMs: cfg.backend.connectTimeout });

  const tlsServer = createTlsServer({
    ...material,
    requestCert: true,
    // Verification still runs; the verdict is read in 'secureConnection' so each refusal is named.
    rejectUnauthorized: false,
    minVersion: cfg.tls.minVersion,
    handshakeTimeout: cfg.headerTimeout,
  });
  const reloader = new TlsMaterialReloader(cfg.tls, tlsServer, log, `${keyPath}.tls`);
  if (cfg.tls.watch) reloader.watch();

  tlsServer.on('tlsClientError', (err: Error & { code?: string }, s: TLSSocket) => {
    countTls(cfg.name, 'client', err);
    emitEvent(ctx, {
      kind: 'tls-failure',
      action: 'rejected',
      reason:
        err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshake-timeout' : `handshake failed: ${err.message}`,
      client: clientName(s),
    });
    s.destroy();
  });

  tlsServer.on('secureConnection', (s: TLSSocket) => {
    s.on('error', () => {});
    // Completed; a certificate refused below is an auth-failure event, not a failed handshake.
    countTls(cfg.name, 'client');
    const client = clientName(s);
    const auth = authenticate(s, policy);
    if (!auth.ok) {
      emitEvent(ctx, {
        kind: 'auth-failure',
        action: 'rejected',
        reason: `${auth.reason}: ${auth.detail}`,
        client,
        ...(auth.identity?.cn[0] ? { object: auth.identity.cn[0] } : {}),
      });
      s.destroy();
      return;
    }
    log.debug({ client, by: auth.by, protocol: s.getProtocol() }, 'tunnel client authenticated');
    if (pool) new MessageSession(ctx, s, auth.identity, client).start();
    else
      runStreamSession(ctx, connector, s, auth.identity, client).catch((e: Error) => {
        log.warn({ client, err: e.message }, 'tunnel stream failed');
        s.destroy();
      });
  });

  const listener = await createTcpListener({
    name: cfg.name,
    listen: cfg.listen,
    allow: cfg.clients,
    maxConnections: cfg.maxConnections,
    logger: log,
    onConnection: (socket) => {
      socket.setNoDelay(true);
      socket.on('error', () => {});
      tlsServer.emit('connection', socket);
    },
  });

  return {
    name: cfg.name,
    protocol: 'tunnel',
    address: listener.address,
    reload: () => reloader.reload(),
    /**
     * SIGHUP: the same listener config (the files' content may have changed) is taken in place —
     * new material for new handshakes, live connections untouched for as long as they last —
     * instead of a new service whose predecessor would cut them at drain.reloadTimeout. Any other
     * change to the listener (mode, upstream, allow-lists, file paths…) starts a new service.
     */
    async reloadInPlace(next, nextDeps) {
      if (JSON.stringify(next) !== JSON.stringify(cfg)) return false;
      // Scans started on the previous engine finish there; the next request uses the new one.
      ctx.scanner = nextDeps.scanner;
      await reloader.reload().catch((e: Error) =>
        // As for a file change: unusable material never replaces the running one.
        log.error({ err: e.message }, 'tunnel TLS material unusable on reload; keeping the running one'),
      );
      return true;
    },
    get reloads() {
      return reloader.generation;
    },
    get backendReady() {
      return pool?.readyConnections ?? 0;
    },
    /**
     * Stops accepting; live connections keep working until shortly before the deadline (a SIGHUP
     * generation change passes drain.reloadTimeout, so long-lived clients are not cut at every
     * reload), then message sessions get GOAWAY SHUTTING_DOWN and whatever is left is closed.
     */
    async close(deadlineMs = 10_000) {
      reloader.close();
      const goaway = setTimeout(() => shutdown.abort(), Math.max(0, deadlineMs - GOAWAY_BEFORE_DEADLINE_MS));
      goaway.unref();
      await listener.close(deadlineMs);
      clearTimeout(goaway);
      shutdown.abort();
      pool?.close();
    },
  };
}
