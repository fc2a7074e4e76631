/**
 * The TLS "bump" every protocol reuses (HTTPS CONNECT/transparent, SMTPS and STARTTLS, FTPS): read the
 * client's ClientHello without answering it, open and verify TLS to the real server first, and only
 * then answer the client with a leaf carrying the real server's names, signed by our CA.
 *
 * Connection discipline (DESIGN 1, capability 2): if the server is down or untrusted, the client has
 * not received a single byte from us — interceptTls rejects and leaves the client socket untouched, so
 * the caller can mirror the failure (RST, 502 page, 421). This is mitmproxy's "eager" strategy
 * (reference notes §1.1) without its fallback of handshaking with the client anyway.
 *
 * ALPN (reference notes §1.5): the client's offers go upstream (narrowed to `alpn` when the caller can
 * only speak some protocols, e.g. http/1.1); the client is answered with what the server picked.
 *
 * Pinning: a client that aborts our handshake with unknown_ca / bad_certificate / certificate_unknown
 * (RFC 8446 §6.2) does not trust our CA — typically an app that pins its server's key. The host is then
 * passed through (not intercepted) for tls.autoPassthroughTtl, as mitmproxy users ask in #5063/#8083.
 */
import { isIP, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { EventSink } from '../admin/events.js';
import { observeTls } from '../admin/metrics.js';
import { ScangateError } from '../errors.js';
import type { Logger } from '../logger.js';
import { formatHostPort } from '../net/connect.js';
import { type ClientHello, MAX_CLIENT_HELLO, parseClientHello, peekFirstBytes } from '../net/sniff.js';
import { withTimeout } from '../net/timeouts.js';
import { type CertNames, namesFromPeerCertificate } from './leaf.js';
import type { TlsRuntime } from './runtime.js';
import { connectUpstreamTls } from './upstream.js';

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The client side of an interception failed (bad ClientHello, handshake error, our certificate rejected). */
export class ClientTlsError extends ScangateError {}

export interface InterceptOptions {
  /** Raw TCP from the client; its ClientHello not yet consumed, or consumed into `head`. */
  client: Socket;
  /** Bytes already read from the client (they are put back in front of the stream). */
  head?: Buffer;
  /** The parsed ClientHello when the caller already has it (then `head` must hold its bytes). */
  hello?: ClientHello;
  target: { host: string; port: number };
  runtime: TlsRuntime;
  /** Application protocols the caller can speak; default: whatever the client offers. */
  alpn?: string[];
  /** An established TCP connection to the target (e.g. the one that proved it up, or after STARTTLS). */
  upstreamSocket?: Socket;
  logger: Logger;
  events?: EventSink;
  listener: string;
  protocol: string;
  /** For the ClientHello, the upstream connect+handshake, and the client handshake each. */
  timeoutMs?: number;
}

export interface Intercepted {
  client: TLSSocket;
  upstream: TLSSocket;
  names: CertNames;
  hello: ClientHello;
  /** ALPN agreed with the server (and offered to the client). */
  alpn: string | false;
}

/** TLS alerts with which a client says "I do not trust this certificate" (RFC 8446 §6.2). */
const REJECTION =
  /alert (unknown ca|bad certificate|certificate unknown)|ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN)/i;

export async function interceptTls(o: InterceptOptions): Promise<Intercepted> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const client = o.client;
  const clientAddress = client.remoteAddress
    ? formatHostPort(client.remoteAddress, client.remotePort ?? 0)
    : undefined;
  const server = formatHostPort(o.target.host, o.target.port);

  // 1. The ClientHello, left unread in the client stream for the TLS layer to consume.
  if (o.head?.length && !client.readableEnded) client.unshift(o.head);
  let hello = o.hello;
  if (!hello) {
    const bytes = await peekFirstBytes(client, {
      max: MAX_CLIENT_HELLO + 1024,
      timeoutMs,
      want: (b) => parseClientHello(b).state !== 'need-more',
    });
    const parsed = parseClientHello(bytes);
    if (parsed.state !== 'ok') {
      const reason =
        parsed.state === 'malformed'
          ? parsed.reason
          : parsed.state === 'not-tls'
            ? 'not a TLS ClientHello'
            : bytes.length === 0 || client.readableEnded
              ? 'client closed before its ClientHello'
              : 'incomplete ClientHello (timeout)';
      throw new ClientTlsError('ERR_TLS_CLIENT_HELLO', `${clientAddress ?? 'client'}: ${reason}`);
    }
    hello = parsed.hello;
  }
  const sni = hello.sni;

  // 2. Upstream first, verified. On failure the client has seen nothing from us.
  const offered = offerAlpn(hello.alpn, o.alpn);
  const up = await observeTls(
    o.listener,
    'upstream',
    connectUpstreamTls({
      host: o.target.host,
      port: o.target.port,
      ...(sni ? { servername: sni } : isIP(o.target.host) ? {} : { servername: o.target.host }),
      alpn: offered,
      verify: o.runtime.upstream.verify,
      extraCa: o.runtime.upstream.extraCa,
      ...(o.upstreamSocket ? { socket: o.upstreamSocket } : {}),
      timeoutMs,
    }),
  );

  // 3. A leaf with the server's names (plus SNI, or the address the client dialled when it sent none).
  const names = namesFromPeerCertificate(up.certificate, sni ?? o.target.host);
  let tlsClient: TLSSocket | null = null;
  try {
    const context = await o.runtime.minter.secureContext(names);
    if (client.destroyed)
      throw new ClientTlsError('ERR_TLS_CLIENT_GONE', 'client closed during the upstream handshake');

    // 4. Only now answer the ClientHello.
    tlsClient = new TLSSocket(client, {
      isServer: true,
      secureContext: context,
      ...(up.alpn ? { ALPNProtocols: [up.alpn] } : {}),
    });
    await observeTls(
      o.listener,
      'client',
      withTimeout(
        handshake(tlsClient),
        timeoutMs,
        () =>
          new ClientTlsError(
            'ERR_TLS_CLIENT_TIMEOUT',
            `client TLS handshake not finished within ${timeoutMs} ms`,
          ),
      ),
    );
  } catch (e) {
    up.socket.destroy();
    tlsClient?.destroy();
    client.destroy();
    const err = e as Error & { code?: string };
    const message = `${err.message}${err.code && !err.message.includes(err.code) ? ` (${err.code})` : ''}`;
    const host = sni ?? o.target.host;
    if (REJECTION.test(message)) {
      const reason = `client rejected our certificate: ${tlsAlertName(message)}`;
      const ctx = { listener: o.listener, protocol: o.protocol, client: clientAddress, server };
      o.runtime.passthrough.learn(host, reason, ctx);
      // The policy emits through its own sink; a different sink given here hears about it too.
      if (o.events && o.events !== o.runtime.passthrough.events) {
        o.events.emit({ kind: 'passthrough-learned', ...ctx, object: host, action: 'passthrough', reason });
      }
      throw new ClientTlsError('ERR_TLS_CLIENT_REJECTED_CERT', `${clientAddress ?? 'client'}: ${reason}`, {
        cause: e,
      });
    }
    if (e instanceof ClientTlsError && e.code === 'ERR_TLS_CLIENT_GONE') throw e;
    o.logger.info(
      { listener: o.listener, client: clientAddress, server, sni, err: message },
      'client TLS handshake failed',
    );
    o.events?.emit({
      kind: 'tls-failure',
      listener: o.listener,
      protocol: o.protocol,
      ...(clientAddress ? { client: clientAddress } : {}),
      server,
      object: host,
      action: 'error',
      reason: `client handshake: ${message}`,
    });
    if (e instanceof ClientTlsError) throw e;
    throw new ClientTlsError('ERR_TLS_CLIENT_HANDSHAKE', `client TLS handshake failed: ${message}`, {
      cause: e,
    });
  }
  return { client: tlsClient, upstream: up.socket, names, hello, alpn: up.alpn };
}

function handshake(s: TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      s.off('secure', onSecure);
      s.off('error', onError);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onSecure = () => done();
    const onError = (e: Error) => done(e);
    const onClose = () =>
      done(new ClientTlsError('ERR_TLS_CLIENT_GONE', 'client closed during the TLS handshake'));
    s.once('secure', onSecure);
    s.on('error', onError);
    s.once('close', onClose);
  });
}

/** The client's ALPN offers restricted to what the caller speaks; the caller's list if nothing remains. */
export function offerAlpn(clientOffers: string[], allowed?: string[]): string[] {
  if (!allowed) return clientOffers;
  const narrowed = clientOffers.filter((p) => allowed.includes(p));
  return narrowed.length ? narrowed : clientOffers.length ? [] : allowed;
}

function tlsAlertName(message: string): string {
  const m = /alert ([a-z ]+)/i.exec(message);
  if (m) return m[1]!.trim().replace(/ /g, '_');
  const c = /ALERT_([A-Z_]+)/.exec(message);
  return c ? c[1]!.toLowerCase() : message;
}
