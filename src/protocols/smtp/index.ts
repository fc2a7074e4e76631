/**
 * The SMTP scanning gateway (listener `protocol: smtp`): a before-queue relay in front of one mail
 * server, TLS on each leg as configured, every message scanned before the server sees it.
 */
// tls/leaf.ts uses @peculiar/x509, whose tsyringe needs the Reflect metadata API loaded first.
import 'reflect-metadata';
import type { Socket } from 'node:net';
import type { SmtpListenerConfig } from '../../config/schema.js';
import { createTcpListener } from '../../net/listener.js';
import type { RunningService } from '../../net/service.js';
import { createSmtpContext, type SmtpDeps } from './context.js';
import { SmtpSession } from './session.js';

export type { SmtpDeps } from './context.js';

export async function startSmtpListener(cfg: SmtpListenerConfig, deps: SmtpDeps): Promise<RunningService> {
  const shutdown = new AbortController();
  const ctx = await createSmtpContext(cfg, deps, shutdown.signal);
  const sessions = new Set<Promise<void>>();
  const listener = await createTcpListener({
    name: cfg.name,
    listen: cfg.listen,
    allow: cfg.allow,
    maxConnections: cfg.maxConnections,
    logger: ctx.log,
    onConnection: (socket: Socket) => {
      socket.on('error', () => {});
      socket.setNoDelay(true);
      const run = new SmtpSession(ctx, socket).run().catch((e: Error) => {
        ctx.log.warn({ err: e.message }, 'smtp session failed');
        socket.destroy();
      });
      sessions.add(run);
      void run.finally(() => sessions.delete(run));
    },
  });
  return {
    name: cfg.name,
    protocol: 'smtp',
    address: listener.address,
    close: (deadlineMs?: number) => {
      shutdown.abort();
      return listener.close(deadlineMs);
    },
  };
}
