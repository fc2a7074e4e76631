/**
 * Assembles a running gateway from a Config: engine, TLS runtime, event sink, one service per
 * listener. Owned by `scangate run` and by integration tests, which start it in-process.
 */

import { type EventSink, FanoutEventSink, LogEventSink } from './admin/events.js';
import { type AdminServer, startAdmin } from './admin/server.js';
import type { Config, ListenerConfig } from './config/schema.js';
import { createScanner } from './engine/index.js';
import { BuiltinScanner } from './engine/scanner.js';
import type { Scanner } from './engine/types.js';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';
import type { RunningService, ServiceDeps } from './net/service.js';
import type { CertificateAuthority } from './tls/ca.js';
import { createTlsRuntime, type TlsRuntime } from './tls/runtime.js';

export interface Gateway {
  readonly config: Config;
  readonly scanner: Scanner;
  readonly ca: CertificateAuthority;
  readonly tls: TlsRuntime;
  readonly services: RunningService[];
  readonly admin: AdminServer | null;
  banner(): string[];
  /** Reloads signatures; connections in flight finish on the engine they started with. */
  reload(): Promise<void>;
  close(deadlineMs?: number): Promise<void>;
}

export interface GatewayOptions {
  /** Extra event sinks (tests, the dashboard). */
  events?: EventSink[];
}

/**
 * Protocol services are added here as they are built (issue tracker: HTTPS, SMTP, FTP, tunnel,
 * clamd, ICAP). A listener naming one that is not in this build is refused with its key path.
 */
type GatewayDeps = ServiceDeps & { tls: TlsRuntime };

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
  icap: async (l, deps) => {
    const { startIcapListener } = await import('./protocols/icap/index.js');
    return startIcapListener(l as Extract<ListenerConfig, { protocol: 'icap' }>, deps);
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

export async function startGateway(
  config: Config,
  logger: Logger,
  options: GatewayOptions = {},
): Promise<Gateway> {
  const events = new FanoutEventSink([new LogEventSink(logger), ...(options.events ?? [])]);
  const scanner = await createScanner(config.engine, { dataDir: config.dataDir, logger });
  // One TLS runtime per process: the CA (created on first start), the leaf-context cache and the
  // learned passthrough list are shared by every listener.
  const tls = await createTlsRuntime(config, logger, events);
  const ca = tls.ca;
  const deps: GatewayDeps = { config, scanner, logger, events, tls };
  const services: RunningService[] = [];
  const unavailable: string[] = [];
  let admin: AdminServer | null = null;
  try {
    for (const l of config.listeners) {
      try {
        services.push(await startService(l, deps));
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        // Keep the rest running; readiness reports what is missing.
        unavailable.push(e.message);
        logger.error({ listener: l.name, reason: e.message }, 'listener not started');
      }
    }
    if (config.admin)
      admin = await startAdmin({ listen: config.admin.listen, scanner, services: () => services, logger });
  } catch (e) {
    await Promise.allSettled(services.map((s) => s.close(0)));
    await admin?.close();
    await scanner.close?.();
    throw e;
  }
  logger.info(
    {
      listeners: services.map((s) => ({ name: s.name, protocol: s.protocol, address: s.address })),
      engine: scanner.version(),
    },
    'scangate running',
  );

  return {
    config,
    scanner,
    ca,
    tls,
    services,
    admin,
    banner() {
      const v = scanner.version();
      const lines = [
        `scangate: engine ${v.engine}, database ${v.databaseVersion}, ${v.signatures} signatures`,
      ];
      for (const s of services) {
        const addr = typeof s.address === 'string' ? s.address : `${s.address.address}:${s.address.port}`;
        lines.push(`scangate: ${s.name} (${s.protocol}) listening on ${addr}`);
      }
      if (admin)
        lines.push(
          `scangate: admin on http://${admin.address.address}:${admin.address.port}/ (/healthz /readyz /metrics)`,
        );
      for (const u of unavailable) lines.push(`scangate: NOT STARTED: ${u}`);
      lines.push(`scangate: interception CA ${ca.files.cert} (SHA-256 ${ca.fingerprint256})`);
      lines.push(
        `scangate: clients must trust it, e.g. curl --cacert ${ca.files.cert} (README: "Trusting the CA")`,
      );
      return lines;
    },
    async reload() {
      if (scanner instanceof BuiltinScanner) {
        const { loadEngine } = await import('./engine/index.js');
        const engine = await loadEngine(config.engine.signatures);
        await scanner.swap(engine);
        logger.info({ version: engine.version, signatures: engine.signatures }, 'signatures reloaded');
      }
    },
    async close(deadlineMs = 30_000) {
      await Promise.allSettled(services.map((s) => s.close(deadlineMs)));
      await admin?.close();
      await scanner.close?.();
    },
  };
}
