/**
 * The TLS pieces one process shares across all its listeners: the CA, the leaf minter with its
 * context cache, the passthrough policy (learned hosts apply to every protocol), and upstream trust.
 */
import { readFile } from 'node:fs/promises';
import type { EventSink } from '../admin/events.js';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import { CertificateAuthority } from './ca.js';
import { LeafMinter } from './leaf.js';
import { PassthroughPolicy } from './passthrough.js';

export interface TlsRuntime {
  ca: CertificateAuthority;
  minter: LeafMinter;
  passthrough: PassthroughPolicy;
  upstream: { verify: boolean; extraCa: string[] };
}

export async function createTlsRuntime(
  config: Config,
  logger: Logger,
  events?: EventSink,
): Promise<TlsRuntime> {
  const { ca, created } = await CertificateAuthority.loadOrCreate({
    dataDir: config.dataDir,
    cert: config.tls.ca.cert,
    key: config.tls.ca.key,
    logger,
  });
  if (created)
    logger.info({ cert: ca.files.cert, fingerprint: ca.fingerprint256 }, 'interception CA created');
  const extraCa = await readExtraCa(config.tls.upstream.ca);
  if (!config.tls.upstream.verify)
    logger.warn(
      'tls.upstream.verify is off: upstream certificates are not checked (interception of our own traffic is possible)',
    );
  return {
    ca,
    minter: new LeafMinter(ca, {
      validityMs: config.tls.leafValidity,
      cacheSize: config.tls.contextCacheSize,
    }),
    passthrough: new PassthroughPolicy(config.tls.passthrough, config.tls.autoPassthroughTtl, logger, events),
    upstream: { verify: config.tls.upstream.verify, extraCa },
  };
}

/** Reads each tls.upstream.ca file (a PEM bundle may hold several certificates). */
export async function readExtraCa(files: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const [i, file] of files.entries()) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`tls.upstream.ca.${i}`, `cannot read ${file}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    if (!pems) throw new ConfigError(`tls.upstream.ca.${i}`, `${file} holds no PEM certificate`);
    out.push(...pems.map((p) => `${p}\n`));
  }
  return out;
}
