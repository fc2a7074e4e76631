/**
 * The ICAP server (listener `protocol: icap`, RFC 3507): Squid and other proxies hand it requests
 * (REQMOD) and responses (RESPMOD) to scan at icap://HOST:PORT/avscan (also /reqmod, /respmod).
 * Each accepted connection runs its own session; close() stops accepting, closes idle connections
 * and lets exchanges in flight finish until the deadline.
 */
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { IcapListenerConfig } from '../../config/schema.js';
import { createTcpListener } from '../../net/listener.js';
import type { RunningService, ServiceDeps } from '../../net/service.js';
import { type IcapContext, IcapSession } from './session.js';

export async function startIcapListener(cfg: IcapListenerConfig, deps: ServiceDeps): Promise<RunningService> {
  const shutdown = new AbortController();
  // Every open session listens for the shutdown; up to maxConnections of them is expected.
  setMaxListeners(0, shutdown.signal);
  const ctx: IcapContext = {
    cfg,
    deps,
    log: deps.logger.child({ listener: cfg.name }),
    spoolDir: join(deps.config.dataDir, 'spool'),
    shutdown: shutdown.signal,
  };
  const listener = await createTcpListener({
    name: cfg.name,
    listen: cfg.listen,
    allow: cfg.allow,
    maxConnections: cfg.maxConnections,
    logger: ctx.log,
    onConnection: (socket: Socket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      // Dead peers and abandoned connections: no byte either way for idleTimeout ends it.
      socket.setTimeout(cfg.idleTimeout, () => socket.destroy());
      new IcapSession(ctx, socket).run().catch((e: Error) => {
        ctx.log.warn({ err: e.message }, 'icap session failed');
        socket.destroy();
      });
    },
  });
  return {
    name: cfg.name,
    protocol: 'icap',
    address: listener.address,
    close: (deadlineMs?: number) => {
      shutdown.abort();
      return listener.close(deadlineMs);
    },
  };
}
