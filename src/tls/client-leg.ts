/**
 * The certificate a mail or file gateway presents on its client leg (SMTP STARTTLS/SMTPS, FTP
 * AUTH TLS/FTPS): the configured cert/key, else one minted for the configured name, else for the
 * real server's certificate names, else for the upstream host. Shared so both protocols choose
 * the same way and refuse a half-configured pair with the same error.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import { ConfigError } from '../errors.js';
import { type CertNames, type LeafMinter, namesFromPeerCertificate } from './leaf.js';
import { ticketKeys } from './ticket-keys.js';

export type ClientLegContext = (upstreamCert: PeerCertificate | null) => Promise<SecureContext>;

function namesFor(name: string): CertNames {
  return isIP(name)
    ? { commonName: name, dnsNames: [], ipAddresses: [name] }
    : { commonName: name, dnsNames: [name], ipAddresses: [] };
}

/** Loads the fixed cert/key once (a ConfigError naming `listeners.NAME.tls` if unusable). */
export async function clientLegContext(opts: {
  listener: string;
  tls: { cert?: string; key?: string; name?: string };
  upstreamHost: string;
  minter: LeafMinter;
}): Promise<ClientLegContext> {
  const { tls, minter } = opts;
  const key = `listeners.${opts.listener}.tls`;
  let fixed: SecureContext | null = null;
  if (tls.cert || tls.key) {
    if (!tls.cert || !tls.key) throw new ConfigError(key, 'cert and key must be given together');
    try {
      const [cert, pem] = await Promise.all([readFile(tls.cert), readFile(tls.key)]);
      fixed = createSecureContext({
        cert,
        key: pem,
        ticketKeys: ticketKeys('listener', opts.listener, cert),
      });
    } catch (e) {
      throw new ConfigError(key, `cannot load cert/key: ${(e as Error).message}`);
    }
  }
  return (upstreamCert) => {
    if (fixed) return Promise.resolve(fixed);
    if (tls.name) return minter.secureContext(namesFor(tls.name));
    if (upstreamCert && Object.keys(upstreamCert).length > 0) {
      const names = namesFromPeerCertificate(upstreamCert);
      if (names.dnsNames.length || names.ipAddresses.length) return minter.secureContext(names);
    }
    return minter.secureContext(namesFor(opts.upstreamHost));
  };
}
