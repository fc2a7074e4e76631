/**
 * What every HTTP listener mode shares: config, dependencies, the TLS runtime, the upstream
 * connector, and the small helpers each mode uses to open origins and report events.
 */
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { EventAction } from '../../admin/events.js';
import type { HttpListenerConfig } from '../../config/schema.js';
import { UpstreamError } from '../../errors.js';
import { UpstreamFirstConnector } from '../../net/connect.js';
import type { ServiceDeps } from '../../net/service.js';
import type { TlsRuntime } from '../../tls/runtime.js';
import { connectUpstreamTls } from '../../tls/upstream.js';
import type { Origin, SessionEnv } from './session.js';
import { ShutdownHub } from './shutdown.js';
import { formatAuthority } from './target.js';
import { relayTunnel } from './tunnel.js';

export interface HttpDeps extends ServiceDeps {
  tls: TlsRuntime;
}

export interface ListenerContext {
  cfg: HttpListenerConfig;
  deps: HttpDeps;
  connector: UpstreamFirstConnector;
  env: SessionEnv;
  /** Milliseconds allowed for an upstream TCP/TLS connect. */
  connectTimeoutMs: number;
  /** How long to wait for a client's first bytes before treating the stream as not HTTP/TLS. */
  sniffTimeoutMs: number;
}

export function createContext(
  cfg: HttpListenerConfig,
  deps: HttpDeps,
  shutdown?: AbortSignal,
): ListenerContext {
  const connector = new UpstreamFirstConnector();
  const connectTimeoutMs = Math.min(cfg.headerTimeout, 10_000);
  const ctx: ListenerContext = {
    cfg,
    deps,
    connector,
    connectTimeoutMs,
    sniffTimeoutMs: Math.min(cfg.headerTimeout, 5_000),
    env: {
      listener: cfg,
      deps,
      spoolDir: join(deps.config.dataDir, 'spool'),
      shutdown,
      ...(shutdown ? { shutdownWatch: new ShutdownHub(shutdown) } : {}),
      connect: (origin) => openOrigin(ctx, origin),
      relay: async (a, b) => {
        await relayTunnel(a, b, cfg.idleTimeout);
      },
    },
  };
  return ctx;
}

/** TCP to the origin, then TLS verified against the system roots plus tls.upstream.ca when it speaks https. */
export async function openOrigin(ctx: ListenerContext, origin: Origin): Promise<Duplex> {
  if (!origin.tls)
    return ctx.connector.connect(origin.host, origin.port, { timeoutMs: ctx.connectTimeoutMs });
  const { verify, extraCa } = ctx.deps.tls.upstream;
  const up = await connectUpstreamTls({
    host: origin.host,
    port: origin.port,
    servername: origin.servername ?? origin.host,
    alpn: ['http/1.1'],
    verify,
    extraCa,
    timeoutMs: ctx.connectTimeoutMs,
  });
  return up.socket;
}

export function describeError(e: unknown): string {
  if (e instanceof UpstreamError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

export function peerAddress(s: Socket): string {
  return formatAuthority(s.remoteAddress ?? '?', s.remotePort ?? 0);
}

export function emitConnectionEvent(
  ctx: ListenerContext,
  e: {
    kind: string;
    action: EventAction;
    client: string;
    server: string;
    protocol?: string;
    reason?: string;
    object?: string;
  },
): void {
  ctx.deps.events.emit({ listener: ctx.cfg.name, protocol: e.protocol ?? 'http', ...e });
}
