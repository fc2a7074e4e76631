/**
 * Test PKI for the mTLS tunnel: a CA that issues client certificates (clientAuth, with CN, DNS and URI
 * SANs) and server certificates, and signs CRLs revoking chosen certificates. Everything is written to
 * a temp directory as PEM files, because the gateway, openssl s_client and stunnel4 all read files.
 */
import 'reflect-metadata';
import type { webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { ALG, DAY, keyPair, pemKey, selfSignedCa, serial } from './pki.js';

export interface IssuedCert {
  certPem: string;
  keyPem: string;
  /** Hex serial, for CRL entries. */
  serial: string;
}

export interface IssueOptions {
  commonName: string;
  dns?: string[];
  uri?: string[];
  ip?: string[];
  usage?: 'client' | 'server';
}

export class TunnelCa {
  private readonly revoked: string[] = [];
  private constructor(
    readonly name: string,
    readonly certPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly keys: webcrypto.CryptoKeyPair,
  ) {}

  static async create(name = 'tunnel test CA'): Promise<TunnelCa> {
    const { cert, keys } = await selfSignedCa(name);
    return new TunnelCa(name, cert.toString('pem'), cert, keys);
  }

  async issue(o: IssueOptions): Promise<IssuedCert> {
    const keys = await keyPair();
    const now = Date.now();
    const sn = serial();
    const names: x509.JsonGeneralName[] = [
      ...(o.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(o.uri ?? []).map((value) => ({ type: 'url' as const, value })),
      ...(o.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: sn,
      // JSON form, so a CN with commas or quotes is one attribute, not parsed as a DN string.
      subject: [{ CN: [o.commonName] }, { O: ['scangate tests'] }],
      issuer: this.cert.subject,
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 30 * DAY),
      signingAlgorithm: ALG,
      publicKey: keys.publicKey,
      signingKey: this.keys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          o.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey),
        ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      ],
    });
    return { certPem: cert.toString('pem'), keyPem: await pemKey(keys.privateKey), serial: sn };
  }

  revoke(cert: IssuedCert): void {
    this.revoked.push(cert.serial);
  }

  /** A CRL (PEM) listing every certificate revoked so far, valid for a day. */
  async crl(): Promise<string> {
    const now = Date.now();
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.cert.subject,
      thisUpdate: new Date(now - 60_000),
      nextUpdate: new Date(now + DAY),
      signingAlgorithm: ALG,
      signingKey: this.keys.privateKey,
      entries: this.revoked.map((serialNumber) => ({ serialNumber, revocationDate: new Date(now - 60_000) })),
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey)],
    });
    // @peculiar/x509 labels it "CRL"; OpenSSL (and so Node) only reads "X509 CRL" (RFC 7468 §5).
    return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
  }
}

/** A temp directory for PEM files, removed by cleanup(). */
export class PemDir {
  readonly dir = mkdtempSync(join(tmpdir(), 'scangate-tunnel-'));
  write(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }
  path(name: string): string {
    return join(this.dir, name);
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The usual cast of a tunnel test: a CA, the gateway's server certificate, and a CRL file. */
export async function tunnelPki(): Promise<{
  ca: TunnelCa;
  dir: PemDir;
  server: IssuedCert;
  files: { cert: string; key: string; clientCa: string; crl: string };
}> {
  const ca = await TunnelCa.create();
  const dir = new PemDir();
  const server = await ca.issue({
    commonName: 'localhost',
    dns: ['localhost'],
    ip: ['127.0.0.1'],
    usage: 'server',
  });
  return {
    ca,
    dir,
    server,
    files: {
      cert: dir.write('server.crt', server.certPem),
      key: dir.write('server.key', server.keyPem),
      clientCa: dir.write('client-ca.crt', ca.certPem),
      crl: dir.write('crl.pem', await ca.crl()),
    },
  };
}
