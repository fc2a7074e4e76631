/**
 * What every session of one SMTP listener shares: its config, the upstream target, where to spool,
 * and how to get the certificate the client leg presents.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { PeerCertificate, SecureContext } from 'node:tls';
import type { SmtpListenerConfig } from '../../config/schema.js';
import { ConfigError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { ServiceDeps } from '../../net/service.js';
import { clientLegContext } from '../../tls/client-leg.js';
import type { TlsRuntime } from '../../tls/runtime.js';
import { parseAddress } from '../../util/units.js';
import type { MessagePolicy } from './policy.js';
import type { UpstreamTarget } from './upstream.js';

export interface SmtpDeps extends ServiceDeps {
  tls: TlsRuntime;
  /**
   * Asked about every message about to be forwarded, and told how every message ended (policy.ts):
   * the plug-in point for features that judge or stamp mail (the anti-phishing registry) and for
   * per-message metrics. Each policy sees `message.listener` to decide whether it applies.
   */
  messagePolicies?: readonly MessagePolicy[];
}

export interface SmtpContext {
  cfg: SmtpListenerConfig;
  deps: SmtpDeps;
  log: Logger;
  target: UpstreamTarget;
  spoolDir: string;
  /** Our name: in EHLO toward the server and in our own replies. */
  hostname: string;
  shutdown: AbortSignal;
  /** deps.messagePolicies, in order (empty when none). */
  policies: readonly MessagePolicy[];
  /**
   * The client leg's certificate: the configured cert/key, else one minted for `tls.name`, else for
   * the server certificate's names (TLS upstream), else for the upstream host name.
   */
  clientContext(upstreamCert: PeerCertificate | null): Promise<SecureContext>;
}

export async function createSmtpContext(
  cfg: SmtpListenerConfig,
  deps: SmtpDeps,
  shutdown: AbortSignal,
): Promise<SmtpContext> {
  let target: UpstreamTarget;
  try {
    const a = parseAddress(cfg.upstream);
    if (!('host' in a)) throw new RangeError('a unix socket is not an SMTP server address');
    target = a;
  } catch (e) {
    throw new ConfigError(`listeners.${cfg.name}.upstream`, (e as Error).message);
  }
  const clientContext = await clientLegContext({
    listener: cfg.name,
    tls: cfg.tls,
    upstreamHost: target.host,
    minter: deps.tls.minter,
  });
  return {
    cfg,
    deps,
    log: deps.logger.child({ listener: cfg.name }),
    target,
    spoolDir: join(deps.config.dataDir, 'spool'),
    hostname: cfg.tls.name ?? hostname(),
    shutdown,
    policies: deps.messagePolicies ?? [],
    clientContext,
  };
}
