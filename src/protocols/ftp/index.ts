/**
 * The FTP scanning gateway (listener `protocol: ftp`): a relay in front of one FTP server, TLS on
 * each leg as configured (explicit AUTH TLS, implicit, or none), the gateway's own data connections,
 * and every file scanned whole before it reaches the other side.
 */
// tls/leaf.ts uses @peculiar/x509, whose tsyringe needs the Reflect metadata API loaded first.
import 'reflect-metadata';
import type { FtpListenerConfig } from '../../config/schema.js';
import type { RunningService } from '../../net/service.js';
import { startSessionListener } from '../../net/session-listener.js';
import { createFtpContext, type FtpDeps } from './context.js';
import { FtpSession } from './session.js';

export type { FtpDeps } from './context.js';

export async function startFtpListener(cfg: FtpListenerConfig, deps: FtpDeps): Promise<RunningService> {
  const shutdown = new AbortController();
  const ctx = await createFtpContext(cfg, deps, shutdown.signal);
  return startSessionListener({
    listener: cfg,
    protocol: 'ftp',
    log: ctx.log,
    shutdown,
    session: (socket) => new FtpSession(ctx, socket).run(),
  });
}
