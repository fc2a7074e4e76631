/**
 * What every session of one FTP listener shares: its config, the server, the data port range, where
 * to spool, and the certificate the client leg presents (TLS on the control and data connections).
 */
import { join } from 'node:path';
import type { PeerCertificate, SecureContext } from 'node:tls';
import type { FtpListenerConfig } from '../../config/schema.js';
import { ConfigError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { ServiceDeps } from '../../net/service.js';
import { clientLegContext } from '../../tls/client-leg.js';
import type { TlsRuntime } from '../../tls/runtime.js';
import { parseAddress } from '../../util/units.js';
import { type HostPort, parsePortRange } from './address.js';

export interface FtpDeps extends ServiceDeps {
  tls: TlsRuntime;
}

export interface FtpContext {
  cfg: FtpListenerConfig;
  deps: FtpDeps;
  log: Logger;
  target: HostPort;
  ports: { min: number; max: number };
  spoolDir: string;
  shutdown: AbortSignal;
  /**
   * The client leg's certificate: the configured cert/key, else one minted for `tls.name`, else for
   * the server certificate's names, else for the upstream host. One context per session, so a
   * client's data connections can resume its control connection's TLS session.
   */
  clientContext(upstreamCert: PeerCertificate | null): Promise<SecureContext>;
}

export async function createFtpContext(
  cfg: FtpListenerConfig,
  deps: FtpDeps,
  shutdown: AbortSignal,
): Promise<FtpContext> {
  const key = (k: string) => `listeners.${cfg.name}.${k}`;
  let target: HostPort;
  let ports: { min: number; max: number };
  try {
    const a = parseAddress(cfg.upstream);
    if (!('host' in a)) throw new RangeError('a unix socket is not an FTP server address');
    target = a;
  } catch (e) {
    throw new ConfigError(key('upstream'), (e as Error).message);
  }
  try {
    ports = parsePortRange(cfg.passivePorts);
  } catch (e) {
    throw new ConfigError(key('passivePorts'), (e as Error).message);
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
    ports,
    spoolDir: join(deps.config.dataDir, 'spool'),
    shutdown,
    clientContext,
  };
}
