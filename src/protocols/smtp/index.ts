/**
 * The SMTP scanning gateway (listener `protocol: smtp`): a before-queue relay in front of one mail
 * server, TLS on each leg as configured, every message scanned before the server sees it.
 */
// tls/leaf.ts uses @peculiar/x509, whose tsyringe needs the Reflect metadata API loaded first.
import 'reflect-metadata';
import type { SmtpListenerConfig } from '../../config/schema.js';
import type { RunningService } from '../../net/service.js';
import { startSessionListener } from '../../net/session-listener.js';
import { createSmtpContext, type SmtpDeps } from './context.js';
import { SmtpSession } from './session.js';

export type { SmtpDeps } from './context.js';

export async function startSmtpListener(cfg: SmtpListenerConfig, deps: SmtpDeps): Promise<RunningService> {
  const shutdown = new AbortController();
  const ctx = await createSmtpContext(cfg, deps, shutdown.signal);
  return startSessionListener({
    listener: cfg,
    protocol: 'smtp',
    log: ctx.log,
    shutdown,
    session: (socket) => new SmtpSession(ctx, socket).run(),
  });
}
