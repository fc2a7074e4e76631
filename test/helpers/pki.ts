/**
 * Test PKI: an origin CA and server certificates with chosen names and validity (expired, not yet
 * valid, wrong name, self-signed), plus an in-process TLS origin server. Shared by every test that
 * needs a "real" HTTPS/SMTPS/FTPS server to intercept. ECDSA P-256 throughout: key generation is
 * instant, so each test can have its own PKI.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket, type TlsOptions } from 'node:tls';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
export const DAY = 86_400_000;

export interface TestCert {
  certPem: string;
  keyPem: string;
  /** certPem followed by the issuing CA (what a server sends). */
  chainPem: string;
}

export interface CertOptions {
  commonName?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  notBefore?: Date;
  notAfter?: Date;
}

export async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

export async function pemKey(k: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');
}

/** A positive 96-bit serial, in hex. */
export function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(12));
  b[0] = (b[0]! & 0x7f) | 1;
  return Buffer.from(b).toString('hex');
}

function sans(o: CertOptions): x509.Extension[] {
  const names: x509.JsonGeneralName[] = [
    ...(o.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(o.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  return names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [];
}

/** A self-signed CA certificate valid for ten years (backdated a day), and its keys. */
export async function selfSignedCa(
  commonName: string,
): Promise<{ cert: x509.X509Certificate; keys: webcrypto.CryptoKeyPair }> {
  const keys = await keyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 3650 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}

export class TestCa {
  private constructor(
    readonly certPem: string,
    readonly keyPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly keys: webcrypto.CryptoKeyPair,
  ) {}

  static async create(commonName = 'scangate test origin CA'): Promise<TestCa> {
    const { cert, keys } = await selfSignedCa(commonName);
    return new TestCa(cert.toString('pem'), await pemKey(keys.privateKey), cert, keys);
  }

  /** A server certificate signed by this CA. Default: valid now for 30 days, names as given. */
  async issue(o: CertOptions = {}): Promise<TestCert> {
    const keys = await keyPair();
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${o.commonName ?? o.dnsNames?.[0] ?? o.ipAddresses?.[0] ?? 'origin'}`,
      issuer: this.cert.subject,
      notBefore: o.notBefore ?? new Date(now - DAY),
      notAfter: o.notAfter ?? new Date(now + 30 * DAY),
      signingAlgorithm: ALG,
      publicKey: keys.publicKey,
      signingKey: this.keys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey),
        ...sans(o),
      ],
    });
    const certPem = cert.toString('pem');
    return { certPem, keyPem: await pemKey(keys.privateKey), chainPem: `${certPem}\n${this.certPem}\n` };
  }
}

/** A self-signed server certificate (not a CA): what a misconfigured or private server presents. */
export async function selfSignedCert(o: CertOptions = {}): Promise<TestCert> {
  const keys = await keyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${o.commonName ?? o.dnsNames?.[0] ?? 'self-signed'}`,
    notBefore: o.notBefore ?? new Date(now - DAY),
    notAfter: o.notAfter ?? new Date(now + 30 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [new x509.BasicConstraintsExtension(false), ...sans(o)],
  });
  const certPem = cert.toString('pem');
  return { certPem, keyPem: await pemKey(keys.privateKey), chainPem: certPem };
}

/** Writes PEM text to dir/name and returns the path (for openssl/curl arguments). */
export function writePem(dir: string, name: string, pem: string): string {
  const path = join(dir, name);
  writeFileSync(path, pem);
  return path;
}

export interface TlsOrigin {
  server: Server;
  port: number;
  /** Every accepted TLS socket, for assertions (SNI seen, ALPN chosen). */
  sockets: TLSSocket[];
  close(): Promise<void>;
}

/**
 * An in-process TLS server on 127.0.0.1. Default behaviour: answer every connection's first data with
 * a fixed HTTP/1.1 response naming the SNI and ALPN it saw, then close.
 */
export async function startTlsOrigin(
  cert: TestCert,
  opts: { alpn?: string[]; onSecure?: (s: TLSSocket) => void; tls?: TlsOptions } = {},
): Promise<TlsOrigin> {
  const sockets: TLSSocket[] = [];
  const server = createServer({
    key: cert.keyPem,
    cert: cert.chainPem,
    ...(opts.alpn ? { ALPNProtocols: opts.alpn } : {}),
    ...opts.tls,
  });
  server.on('secureConnection', (s: TLSSocket) => {
    sockets.push(s);
    s.on('error', () => {});
    if (opts.onSecure) return opts.onSecure(s);
    s.once('data', () => {
      const body = `origin sni=${(s as TLSSocket & { servername?: string }).servername || '-'} alpn=${s.alpnProtocol || '-'}\n`;
      s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    });
  });
  server.on('tlsClientError', () => {});
  const raw = new Set<import('node:net').Socket>();
  server.on('connection', (s: import('node:net').Socket) => {
    raw.add(s);
    s.once('close', () => raw.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        for (const s of raw) s.destroy();
        server.close(() => resolve());
      }),
  };
}
