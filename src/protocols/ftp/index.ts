/**
 * The FTP scanning gateway (listener `protocol: ftp`): a relay in front of one FTP server, TLS on
 * each leg as configured (explicit AUTH TLS, implicit, or none), the gateway's own data connections,
 * and every file scanned whole before it reaches the other side.
 */
// tls/leaf.ts uses @peculiar/x509, whose tsyringe needs the Reflect metadata API loaded first.
import 'reflect-metadata';
import type { Socket } from 'node:net';
import type { FtpListenerConfig } from '../../config/schema.js';
import { createTcpListener } from '../../net/listener.js';
import type { RunningService } from '../../net/service.js';
import { createFtpContext, type FtpDeps } from './context.js';
import { FtpSession } from './session.js';

export type { FtpDeps } from './context.js';

export async function startFtpListener(cfg: FtpListenerConfig, deps: FtpDeps): Promise<RunningService> {
  const shutdown = new AbortController();
  const ctx = await createFtpContext(cfg, deps, shutdown.signal);
  const listener = await createTcpListener({
    name: cfg.name,
    listen: cfg.listen,
    allow: cfg.allow,
    maxConnections: cfg.maxConnections,
    logger: ctx.log,
    onConnection: (socket: Socket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      new FtpSession(ctx, socket).run().catch((e: Error) => {
        ctx.log.warn({ err: e.message }, 'ftp session failed');
        socket.destroy();
      });
    },
  });
  return {
    name: cfg.name,
    protocol: 'ftp',
    address: listener.address,
    close: (deadlineMs?: number) => {
      shutdown.abort();
      return listener.close(deadlineMs);
    },
  };
}
