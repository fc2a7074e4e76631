/**
 * TLS toward the real server, verified like a browser would: the system roots (Node's bundled Mozilla
 * store) plus the operator's extra roots (tls.upstream.ca), then the host name (RFC 9525 via Node's
 * checkServerIdentity). We verify ourselves after the handshake instead of letting OpenSSL abort it,
 * so every failure becomes an UpstreamError with a stable code and a reason a person can act on
 * ("certificate has expired (notAfter 2020-01-01)"), which the HTTP gateway shows on its 502 page.
 */
import { createHash } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import {
  type ConnectionOptions,
  checkServerIdentity,
  createSecureContext,
  type PeerCertificate,
  rootCertificates,
  type SecureContext,
  type TLSSocket,
  connect as tlsConnect,
} from 'node:tls';
import { UpstreamError } from '../errors.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  formatHostPort,
  UpstreamFirstConnector,
  upstreamErrorFrom,
} from '../net/connect.js';
import { withoutPeerCertificate } from './session-der.js';

export interface UpstreamTlsOptions {
  host: string;
  port: number;
  /** SNI and the name verified; default `host` (never sent when it is an IP literal, RFC 6066 §3). */
  servername?: string;
  alpn?: string[];
  verify: boolean;
  /** Extra trusted roots, PEM. */
  extraCa: string[];
  /** An already-connected TCP socket (e.g. after SMTP STARTTLS or FTP AUTH TLS). */
  socket?: Socket;
  timeoutMs?: number;
  /** A TLS session to resume (FTPS data connections must reuse the control connection's session). */
  session?: Buffer;
  /** Minimum TLS version toward upstream; default TLSv1.2 (mitmproxy's default too). */
  minVersion?: ConnectionOptions['minVersion'];
  /**
   * Where sessions of verified connections are kept and offered again (default the process-wide
   * cache); false: neither. Ignored when `session` is given.
   */
  sessionCache?: UpstreamSessionCache | false;
}

export interface UpstreamTls {
  socket: TLSSocket;
  certificate: PeerCertificate;
  alpn: string | false;
}

/** Contexts holding the roots, one per distinct extraCa set: parsing ~150 roots per connection costs ms. */
const rootContexts = new Map<string, SecureContext>();
/** The key of each extraCa array seen, so the same array is not hashed again for every connection. */
const trustKeys = new WeakMap<string[], string>();

function trustKey(extraCa: string[]): string {
  let key = trustKeys.get(extraCa);
  if (!key) {
    key = createHash('sha256').update(extraCa.join('\n')).digest('hex');
    trustKeys.set(extraCa, key);
  }
  return key;
}

function trustContext(key: string, extraCa: string[]): SecureContext {
  let ctx = rootContexts.get(key);
  if (!ctx) {
    ctx = createSecureContext({ ca: [...rootCertificates, ...extraCa] });
    if (rootContexts.size > 32) rootContexts.clear();
    rootContexts.set(key, ctx);
  }
  return ctx;
}

interface CachedSession {
  session: Buffer;
  /**
   * The certificate verified when the session was first established: a resumed handshake carries
   * none (Node's getPeerCertificate() is then empty), yet its names are needed for the leaf.
   */
  certificate: PeerCertificate;
}

/**
 * TLS sessions of upstream connections that passed verification, to resume the next connection to
 * the same server (RFC 8446 §2.2, RFC 5077): a resumed handshake skips sending and verifying the
 * certificate chain, which is most of a new connection's cost on both ends. The key holds everything
 * that verification depended on (address, server name, trusted roots, whether we verify, minimum
 * version, ALPN), so a session is only ever offered where the same check passed. A server that no
 * longer accepts the session answers with a full handshake, verified as usual.
 */
export class UpstreamSessionCache {
  private readonly sessions = new Map<string, CachedSession & { expires: number }>();

  constructor(
    readonly maxEntries = 1024,
    /** Never offer a session older than this, whatever lifetime the server gave its ticket. */
    readonly maxAgeMs = 10 * 60_000,
  ) {}

  get(key: string, now = Date.now()): CachedSession | undefined {
    const e = this.sessions.get(key);
    if (!e) return undefined;
    if (e.expires <= now) {
      this.sessions.delete(key);
      return undefined;
    }
    return e;
  }

  set(key: string, entry: CachedSession, now = Date.now()): void {
    this.sessions.delete(key);
    this.sessions.set(key, { ...entry, expires: now + this.maxAgeMs });
    if (this.sessions.size > this.maxEntries) this.sessions.delete(this.sessions.keys().next().value!);
  }

  delete(key: string): void {
    this.sessions.delete(key);
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** The process-wide cache connectUpstreamTls uses unless told otherwise. */
export const upstreamSessions = new UpstreamSessionCache();

const connector = new UpstreamFirstConnector();

export async function connectUpstreamTls(o: UpstreamTlsOptions): Promise<UpstreamTls> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const started = Date.now();
  const tcp = o.socket ?? (await connector.connect(o.host, o.port, { timeoutMs }));
  const remaining = Math.max(1, timeoutMs - (Date.now() - started));
  const name = o.servername ?? o.host;
  const where = formatHostPort(o.host, o.port);

  const trust = trustKey(o.extraCa);
  const cache = o.session ? false : (o.sessionCache ?? upstreamSessions);
  const minVersion = o.minVersion ?? 'TLSv1.2';
  const cacheKey = cache
    ? [where, name, trust, o.verify ? 'verify' : 'no-verify', minVersion, (o.alpn ?? []).join(',')].join('|')
    : '';
  const cached = cache ? cache.get(cacheKey) : undefined;
  const session = o.session ?? cached?.session;

  const socket = tlsConnect({
    socket: tcp,
    ...(isIP(name) ? {} : { servername: name }),
    ...(o.alpn?.length ? { ALPNProtocols: o.alpn } : {}),
    secureContext: trustContext(trust, o.extraCa),
    rejectUnauthorized: false,
    // Identity is checked below, once, with a readable error.
    checkServerIdentity: () => undefined,
    minVersion,
    ...(session ? { session } : {}),
  });
  // TLS 1.3 sends its tickets after the handshake ('session' may come before or after our check);
  // a session is kept only once this connection passed verification.
  let verified: PeerCertificate | null = null;
  let unverifiedSession: Buffer | null = null;
  if (cache) {
    socket.on('session', (raw: Buffer) => {
      // Kept without the certificate (it stays beside the session): resuming costs a third.
      const s = withoutPeerCertificate(raw);
      if (verified) cache.set(cacheKey, { session: s, certificate: verified });
      else unverifiedSession = s;
    });
  }

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new UpstreamError(
              'ERR_UPSTREAM_TIMEOUT',
              `${where}: TLS handshake not finished within ${timeoutMs} ms`,
            ),
          ),
        remaining,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        socket.off('secureConnect', onSecure);
        socket.off('error', onError);
        socket.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onSecure = () => done();
      const onError = (e: Error) => done(handshakeError(e, o.host, o.port));
      const onClose = () =>
        done(
          new UpstreamError('ERR_UPSTREAM_RESET', `${where} closed the connection during the TLS handshake`),
        );
      socket.once('secureConnect', onSecure);
      socket.on('error', onError);
      socket.once('close', onClose);
    });
  } catch (e) {
    if (cache && session) cache.delete(cacheKey);
    socket.destroy();
    tcp.destroy();
    throw e;
  }

  // A resumed session was verified when first established (`authorized` is the result OpenSSL kept
  // for a TLS 1.2 session; for a TLS 1.3 one, kept without its certificate, the PSK authenticates
  // the server) and sends no certificate; the one verified then stands in. Not the detailed form of
  // getPeerCertificate: walking the issuer chain into objects costs ~10x (about 140 µs).
  const resumed = cached !== undefined && socket.isSessionReused();
  const certificate = resumed ? cached.certificate : socket.getPeerCertificate();
  if (o.verify) {
    const failure = verificationFailure(socket, certificate, name, where);
    if (failure) {
      if (cache) cache.delete(cacheKey);
      socket.destroy();
      throw failure;
    }
  }
  verified = certificate;
  if (cache && unverifiedSession) cache.set(cacheKey, { session: unverifiedSession, certificate });
  return { socket, certificate, alpn: socket.alpnProtocol ?? false };
}

function handshakeError(e: Error, host: string, port: number): UpstreamError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  const where = formatHostPort(host, port);
  // Node's wording when the peer sent FIN before the handshake finished (code ECONNRESET, but no RST).
  if (/disconnected before secure TLS connection/.test(e.message))
    return new UpstreamError(
      'ERR_UPSTREAM_RESET',
      `${where} closed the connection during the TLS handshake`,
      {
        cause: e,
      },
    );
  if (/^E[A-Z]+$/.test(code)) return upstreamErrorFrom(e, host, port);
  // OpenSSL errors: ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION, ERR_SSL_WRONG_VERSION_NUMBER, …
  const reason = (e as { reason?: string }).reason ?? e.message;
  return new UpstreamError('ERR_UPSTREAM_TLS', `${where}: TLS handshake failed: ${reason}`, { cause: e });
}

const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/** Turns Node's authorizationError (an OpenSSL verify code) and the name check into an UpstreamError. */
export function verificationFailure(
  socket: TLSSocket,
  cert: PeerCertificate,
  name: string,
  where: string,
): UpstreamError | null {
  if (!cert || Object.keys(cert).length === 0) {
    return new UpstreamError('ERR_UPSTREAM_CERT_UNTRUSTED', `${where} presented no certificate`);
  }
  if (!socket.authorized) {
    const err = socket.authorizationError as unknown as Error | string | null;
    const code = typeof err === 'string' ? err : ((err as NodeJS.ErrnoException | null)?.code ?? String(err));
    if (code === 'CERT_HAS_EXPIRED') {
      return new UpstreamError(
        'ERR_UPSTREAM_CERT_EXPIRED',
        `${where}: certificate has expired (notAfter ${isoDate(cert.valid_to)})`,
      );
    }
    if (EXPIRED.has(code)) {
      return new UpstreamError(
        'ERR_UPSTREAM_CERT_EXPIRED',
        `${where}: certificate is not yet valid (notBefore ${isoDate(cert.valid_from)})`,
      );
    }
    return new UpstreamError(
      'ERR_UPSTREAM_CERT_UNTRUSTED',
      `${where}: certificate not trusted: ${untrustedReason(code)} (issuer ${describeName(cert.issuer)})`,
    );
  }
  const mismatch = checkServerIdentity(name, cert);
  if (mismatch) {
    return new UpstreamError(
      'ERR_UPSTREAM_CERT_NAME_MISMATCH',
      `${where}: certificate is for ${certNames(cert)}, not ${name}`,
    );
  }
  return null;
}

function untrustedReason(code: string): string {
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'self-signed certificate';
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'the chain ends in a root we do not trust';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
      return 'issued by an unknown certificate authority';
    case 'CERT_REVOKED':
      return 'certificate revoked';
    case 'CERT_SIGNATURE_FAILURE':
      return 'bad certificate signature';
    case 'INVALID_CA':
      return 'an issuer in the chain is not a CA';
    default:
      return code;
  }
}

function isoDate(openssl: string | undefined): string {
  const d = openssl ? new Date(openssl) : null;
  return d && !Number.isNaN(d.getTime()) ? d.toISOString().slice(0, 10) : (openssl ?? '?');
}

function describeName(n: PeerCertificate['issuer'] | undefined): string {
  if (!n) return '?';
  const cn = n.CN ?? n.O ?? '';
  return (Array.isArray(cn) ? cn[0] : cn) || '?';
}

function certNames(cert: PeerCertificate): string {
  const san = cert.subjectaltname;
  if (san) return san.replace(/DNS:|IP Address:/g, '');
  return describeName(cert.subject);
}
