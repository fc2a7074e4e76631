/**
 * The HTTP(S) scanning proxy service: one listener in explicit, transparent or reverse mode
 * (DESIGN 4.2). Each accepted connection runs in its own async task; close() stops accepting and
 * lets sessions finish until the deadline, then cuts what is left.
 */
// tls/leaf.ts uses @peculiar/x509, whose tsyringe needs the Reflect metadata API loaded first; the
// interception path reaches leaf.ts before anything imports ca.ts (which loads it), so load it here.
import 'reflect-metadata';
import type { Socket } from 'node:net';
import type { HttpListenerConfig } from '../../config/schema.js';
import { createTcpListener } from '../../net/listener.js';
import type { RunningService } from '../../net/service.js';
import { createContext, type HttpDeps } from './context.js';
import { handleExplicit } from './explicit.js';
import { handleReverse, reverseSetup } from './reverse.js';
import { handleTransparent } from './transparent.js';

export type { HttpDeps } from './context.js';

export async function startHttpListener(cfg: HttpListenerConfig, deps: HttpDeps): Promise<RunningService> {
  const shutdown = new AbortController();
  const ctx = createContext(cfg, deps, shutdown.signal);
  const setup = cfg.mode === 'reverse' ? reverseSetup(ctx) : null;
  const handler = (socket: Socket): Promise<void> => {
    if (cfg.mode === 'transparent') return handleTransparent(ctx, socket);
    if (cfg.mode === 'reverse') return handleReverse(ctx, setup!, socket);
    return handleExplicit(ctx, socket);
  };
  const log = deps.logger.child({ listener: cfg.name });
  const listener = await createTcpListener({
    name: cfg.name,
    listen: cfg.listen,
    allow: cfg.allow,
    maxConnections: cfg.maxConnections,
    logger: log,
    onConnection: (socket: Socket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      // Slowloris and dead peers: no byte either way for idleTimeout ends the connection.
      socket.setTimeout(cfg.idleTimeout, () => socket.destroy());
      handler(socket).catch((e: Error) => {
        log.warn({ err: e.message }, 'http connection failed');
        socket.destroy();
      });
    },
  });
  return {
    name: cfg.name,
    protocol: 'http',
    address: listener.address,
    close: (deadlineMs?: number) => {
      shutdown.abort();
      return listener.close(deadlineMs);
    },
  };
}
