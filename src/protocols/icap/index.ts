/**
 * The ICAP server (listener `protocol: icap`, RFC 3507): Squid and other proxies hand it requests
 * (REQMOD) and responses (RESPMOD) to scan at icap://HOST:PORT/avscan (also /reqmod, /respmod).
 * Each accepted connection runs its own session; close() stops accepting, closes idle connections
 * and lets exchanges in flight finish until the deadline.
 */
import { join } from 'node:path';
import type { IcapListenerConfig } from '../../config/schema.js';
import type { RunningService, ServiceDeps } from '../../net/service.js';
import { startSessionListener } from '../../net/session-listener.js';
import { type IcapContext, IcapSession } from './session.js';

export async function startIcapListener(cfg: IcapListenerConfig, deps: ServiceDeps): Promise<RunningService> {
  const shutdown = new AbortController();
  const ctx: IcapContext = {
    cfg,
    deps,
    log: deps.logger.child({ listener: cfg.name }),
    spoolDir: join(deps.config.dataDir, 'spool'),
    shutdown: shutdown.signal,
  };
  return startSessionListener({
    listener: cfg,
    protocol: 'icap',
    log: ctx.log,
    shutdown,
    session: (socket) => {
      // Dead peers and abandoned connections: no byte either way for idleTimeout ends it.
      socket.setTimeout(cfg.idleTimeout, () => socket.destroy());
      return new IcapSession(ctx, socket).run();
    },
  });
}
