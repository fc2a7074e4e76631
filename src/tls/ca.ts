/**
 * The interception CA. Created on first use in dataDir (key 0600 in a 0700 folder, never logged),
 * or loaded from configured files. ECDSA P-256: signing a leaf costs ~0.02 ms against ~0.25 ms for
 * RSA-2048, and key generation is instant (reference notes, section 5).
 */
// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';

type CryptoKey = webcrypto.CryptoKey;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
export const CA_COMMON_NAME = 'scangate interception CA';

export interface CaFiles {
  cert: string;
  key: string;
}

export class CertificateAuthority {
  private constructor(
    readonly certPem: string,
    /** Private; kept for signing leaves, never logged or exported by `ca export`. */
    readonly privateKey: CryptoKey,
    readonly files: CaFiles,
  ) {
    const cert = new X509Certificate(certPem);
    this.fingerprint256 = cert.fingerprint256;
    this.subject = cert.subject;
    this.notAfter = new Date(cert.validTo);
    this.certificate = new x509.X509Certificate(certPem);
    this.chainPem = certificatesToSend(certPem);
  }

  readonly fingerprint256: string;
  readonly subject: string;
  readonly notAfter: Date;
  /** Parsed form for signing leaves. */
  readonly certificate: x509.X509Certificate;
  /**
   * What follows each leaf in the chain we present: the certificates of the CA file that are not
   * self-signed (an operator's CA issued by a root their clients trust, and any intermediates
   * above it); empty for the CA we create ourselves.
   */
  readonly chainPem: string;

  static filesFor(dataDir: string, cert?: string | null, key?: string | null): CaFiles {
    return { cert: cert ?? join(dataDir, 'ca.crt'), key: key ?? join(dataDir, 'ca.key') };
  }

  /** Loads the CA, or creates it when neither file exists (only for the default dataDir locations). */
  static async loadOrCreate(opts: {
    dataDir: string;
    cert?: string | null;
    key?: string | null;
    logger?: Logger;
  }): Promise<{ ca: CertificateAuthority; created: boolean }> {
    const files = CertificateAuthority.filesFor(opts.dataDir, opts.cert, opts.key);
    const [haveCert, haveKey] = await Promise.all([exists(files.cert), exists(files.key)]);
    if (haveCert && haveKey)
      return { ca: await CertificateAuthority.load(files, opts.logger), created: false };
    if (haveCert !== haveKey) {
      throw new ConfigError(
        'tls.ca',
        `found ${haveCert ? files.cert : files.key} but not ${haveCert ? files.key : files.cert}; both are needed`,
      );
    }
    if (opts.cert || opts.key)
      throw new ConfigError('tls.ca', `configured CA files ${files.cert} / ${files.key} do not exist`);
    return { ca: await CertificateAuthority.create(files), created: true };
  }

  static async load(files: CaFiles, logger?: Logger): Promise<CertificateAuthority> {
    if (!(await exists(files.cert)) || !(await exists(files.key))) {
      throw new ConfigError(
        'tls.ca',
        `no CA at ${files.cert} / ${files.key}; create one with: scangate ca init`,
      );
    }
    const [certPem, keyPem, keyStat] = await Promise.all([
      readFile(files.cert, 'utf8'),
      readFile(files.key, 'utf8'),
      stat(files.key),
    ]);
    if ((keyStat.mode & 0o077) !== 0) {
      logger?.warn(
        { file: files.key, mode: (keyStat.mode & 0o777).toString(8) },
        'CA key is readable by others; chmod 600 it',
      );
    }
    const der = x509.PemConverter.decodeFirst(keyPem);
    let key: CryptoKey;
    try {
      key = await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
    } catch (e) {
      throw new ConfigError(
        'tls.ca.key',
        `${files.key} is not a PKCS#8 ECDSA P-256 key: ${(e as Error).message}`,
        { cause: e },
      );
    }
    return new CertificateAuthority(certPem, key, files);
  }

  static async create(files: CaFiles, validityYears = 10): Promise<CertificateAuthority> {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: webcrypto
        .getRandomValues(new Uint8Array(16))
        .reduce((s, b) => s + b.toString(16).padStart(2, '0'), '')
        .replace(/^[89a-f]/, '1'),
      name: `CN=${CA_COMMON_NAME}, O=scangate`,
      notBefore: new Date(now - 86_400_000),
      notAfter: new Date(now + validityYears * 365 * 86_400_000),
      signingAlgorithm: ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const keyDer = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    const keyPem = x509.PemConverter.encode(keyDer, 'PRIVATE KEY');
    await mkdir(join(files.key, '..'), { recursive: true, mode: 0o700 });
    // The key is written with 0600 from the start: no window in which it is world-readable.
    await writeFile(files.key, keyPem, { mode: 0o600, flag: 'wx' });
    await chmod(files.key, 0o600);
    await writeFile(files.cert, cert.toString('pem'), { mode: 0o644 });
    return CertificateAuthority.load(files);
  }

  /** SHA-256 of the certificate's DER, hex, for logs and the banner. */
  get id(): string {
    return createHash('sha256').update(new X509Certificate(this.certPem).raw).digest('hex').slice(0, 16);
  }
}

/**
 * The CA file's certificates minus self-signed ones. A self-signed certificate can only be a trust
 * anchor, which every client that accepts our leaves already holds, so it is left out of the chain
 * (RFC 8446 §4.4.2): sending it cost each client ~0.1-0.2 ms of CPU to decode a certificate it
 * never uses, and the handshake 500 bytes.
 */
function certificatesToSend(certPem: string): string {
  const pems = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return pems
    .filter((pem) => {
      const c = new X509Certificate(pem);
      return !(c.checkIssued(c) && c.verify(c.publicKey));
    })
    .map((pem) => `${pem}\n`)
    .join('');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
