/**
 * Leaf certificates minted on the fly for intercepted servers, and the SecureContext cache.
 *
 * Choices (reference notes §0, §1.1, §7):
 * - one ECDSA P-256 key for every leaf of the process (as mitmproxy, Squid, mockttp): generating a key
 *   per host would add a keygen to the first handshake; signing costs about 0.02 ms;
 * - names copied from the real server's certificate (SANs + CN) plus the client's SNI, so the client
 *   sees the same names it would have seen without us;
 * - notBefore backdated one day (clients with a slow clock), short validity (tls.leafValidity),
 *   random 128-bit serial, EKU serverAuth, AKI from the CA's SKI (strict verifiers such as Go ≥1.25
 *   reject a mismatch), no SKI on the leaf (an identical SKI on CA and leaf confuses SChannel, mitmproxy
 *   #6494);
 * - a CN longer than 64 characters cannot be encoded (RFC 5280 ub-common-name) and is dropped, the SAN
 *   extension then being critical (RFC 5280 §4.2.1.6).
 */
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import * as x509 from '@peculiar/x509';
import type { CertificateAuthority } from './ca.js';
import { ticketKeys } from './ticket-keys.js';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
export const DEFAULT_LEAF_VALIDITY_MS = 30 * DAY;
const BACKDATE_MS = DAY;

export interface CertNames {
  commonName?: string;
  dnsNames: string[];
  ipAddresses: string[];
}

interface LeafKey {
  keys: CryptoKeyPair;
  pem: string;
}

let processLeafKey: Promise<LeafKey> | null = null;

/** The one leaf key pair of this process (generated on first use, never written to disk). */
export function leafKey(): Promise<LeafKey> {
  processLeafKey ??= (async () => {
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return { keys, pem: x509.PemConverter.encode(der, 'PRIVATE KEY') };
  })();
  return processLeafKey;
}

/** Lower-cases, strips a trailing dot, and classifies a name as DNS or IP; null if it is neither. */
export function normalizeName(name: string): { dns: string } | { ip: string } | null {
  let n = name.trim();
  if (n.startsWith('[') && n.endsWith(']')) n = n.slice(1, -1);
  if (isIP(n)) return { ip: n.toLowerCase() };
  n = n.toLowerCase().replace(/\.$/, '');
  // Host names and wildcards as they appear in SANs; anything else (spaces, NULs, URIs) is not copied.
  if (n.length === 0 || n.length > 253 || !/^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(n)) return null;
  return { dns: n };
}

/** Deduplicated, normalized, sorted names: the cache key and what goes into the certificate. */
export function normalizeNames(names: CertNames): Required<CertNames> & { key: string } {
  const dns = new Set<string>();
  const ips = new Set<string>();
  for (const raw of [...names.dnsNames, ...names.ipAddresses]) {
    const n = normalizeName(raw);
    if (n && 'dns' in n) dns.add(n.dns);
    else if (n) ips.add(n.ip);
  }
  let commonName = names.commonName?.trim() ?? '';
  const cn = commonName ? normalizeName(commonName) : null;
  // Browsers ignore the CN; a host-name CN is also made a SAN so it keeps working (mitmproxy does the same).
  if (cn && 'dns' in cn) dns.add(cn.dns);
  else if (cn) ips.add(cn.ip);
  if (commonName.length > 64) commonName = '';
  const dnsNames = [...dns].sort();
  const ipAddresses = [...ips].sort();
  if (!commonName) commonName = [...dnsNames, ...ipAddresses].find((x) => x.length <= 64) ?? '';
  return {
    commonName,
    dnsNames,
    ipAddresses,
    key: JSON.stringify([commonName.toLowerCase(), dnsNames, ipAddresses]),
  };
}

/** Splits Node's `subjectaltname` ("DNS:a, DNS:\"b,c\", IP Address:1.2.3.4"), honouring JSON-quoted values. */
export function parseSubjectAltName(san: string | undefined): { dns: string[]; ip: string[] } {
  const out = { dns: [] as string[], ip: [] as string[] };
  if (!san) return out;
  const re = /(DNS|IP Address|[A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:,\s*|$)/g;
  for (let m = re.exec(san); m && m[0].length > 0; m = re.exec(san)) {
    let value = m[2]!;
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        continue;
      }
    }
    if (m[1] === 'DNS') out.dns.push(value);
    else if (m[1] === 'IP Address') out.ip.push(value);
  }
  return out;
}

/** Names for our leaf: the upstream certificate's SANs and CN, plus the client's SNI. */
export function namesFromPeerCertificate(cert: PeerCertificate | null | undefined, sni?: string): CertNames {
  const names: CertNames = { dnsNames: [], ipAddresses: [] };
  if (cert && Object.keys(cert).length > 0) {
    const cn = cert.subject?.CN as string | string[] | undefined;
    const first = Array.isArray(cn) ? cn[0] : cn;
    if (first) names.commonName = first;
    const san = parseSubjectAltName(cert.subjectaltname);
    names.dnsNames.push(...san.dns);
    names.ipAddresses.push(...san.ip);
  }
  if (sni) {
    if (isIP(sni)) names.ipAddresses.push(sni);
    else names.dnsNames.push(sni);
  }
  return names;
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01; // positive and 16 bytes long in DER (RFC 5280 §4.1.2.2)
  return Buffer.from(bytes).toString('hex');
}

export interface MintedLeaf {
  certPem: string;
  keyPem: string;
  notAfter: Date;
  context: SecureContext;
}

interface CacheEntry {
  promise: Promise<MintedLeaf>;
  /** When to mint afresh: half-way through the leaf's validity. */
  refreshAt: number;
}

export class LeafMinter {
  readonly validityMs: number;
  readonly cacheSize: number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly now: () => number;
  private aki: Promise<x509.Extension> | null = null;
  /** Certificates actually signed (cache misses); for metrics and tests. */
  minted = 0;

  constructor(
    private readonly ca: CertificateAuthority,
    opts: { validityMs?: number; cacheSize?: number; now?: () => number } = {},
  ) {
    this.validityMs = opts.validityMs ?? DEFAULT_LEAF_VALIDITY_MS;
    this.cacheSize = Math.max(1, opts.cacheSize ?? 1000);
    this.now = opts.now ?? Date.now;
  }

  /** A SecureContext presenting a leaf for `names`; cached (LRU) and shared by concurrent callers. */
  async secureContext(names: CertNames): Promise<SecureContext> {
    return (await this.leaf(names)).context;
  }

  /** The minted certificate itself (PEM), e.g. for tests or for export. */
  leaf(names: CertNames): Promise<MintedLeaf> {
    const n = normalizeNames(names);
    const now = this.now();
    const hit = this.cache.get(n.key);
    if (hit && hit.refreshAt > now) {
      // Map iteration order is insertion order: re-inserting marks it most recently used.
      this.cache.delete(n.key);
      this.cache.set(n.key, hit);
      return hit.promise;
    }
    const promise = this.mint(n);
    const entry: CacheEntry = { promise, refreshAt: now + this.validityMs / 2 };
    this.cache.delete(n.key);
    this.cache.set(n.key, entry);
    // A failed mint must not stay cached.
    promise.catch(() => {
      if (this.cache.get(n.key) === entry) this.cache.delete(n.key);
    });
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
    return promise;
  }

  get cachedEntries(): number {
    return this.cache.size;
  }

  private authorityKeyId(): Promise<x509.Extension> {
    this.aki ??= (async () => {
      const ski = this.ca.certificate.getExtension(x509.SubjectKeyIdentifierExtension);
      if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId);
      return x509.AuthorityKeyIdentifierExtension.create(this.ca.certificate.publicKey);
    })();
    return this.aki;
  }

  private async mint(n: Required<CertNames>): Promise<MintedLeaf> {
    const key = await leafKey();
    const now = this.now();
    const notBefore = new Date(now - BACKDATE_MS);
    let notAfter = new Date(now + this.validityMs);
    // A leaf outliving its CA would fail verification anyway; stop at the CA's end.
    if (notAfter > this.ca.notAfter) notAfter = this.ca.notAfter;
    const general: x509.JsonGeneralName[] = [
      ...n.dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...n.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
    ];
    const cnFits = n.commonName.length > 0 && n.commonName.length <= 64;
    const subject = cnFits ? `CN=${escapeDnValue(n.commonName)}, O=scangate` : 'O=scangate';
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await this.authorityKeyId(),
    ];
    if (general.length) extensions.push(new x509.SubjectAlternativeNameExtension(general, !cnFits));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: this.ca.certificate.subject,
      notBefore,
      notAfter,
      signingAlgorithm: ALG,
      publicKey: key.keys.publicKey,
      signingKey: this.ca.privateKey,
      extensions,
    });
    const certPem = cert.toString('pem');
    this.minted++;
    // The chain carries the CA when it is an intermediate (an operator's CA under their own root), so
    // clients that trust only that root still build a path; a self-signed CA is left out, clients hold it.
    const context = createSecureContext({
      key: key.pem,
      cert: `${certPem}\n${this.ca.chainPem}`,
      // Each worker mints its own leaf for a host; the same ticket keys let a client resume on any.
      ticketKeys: ticketKeys('leaf', this.ca.chainPem, ...n.dnsNames, '', ...n.ipAddresses),
    });
    return { certPem, keyPem: key.pem, notAfter, context };
  }
}

/** RFC 4514 escaping for a value inside a string DN. */
function escapeDnValue(v: string): string {
  return v
    .replace(/([,+"\\<>;=])/g, '\\$1')
    .replace(/^([ #])/, '\\$1')
    .replace(/ $/, '\\ ');
}
