/**
 * Reverse proxy in front of one origin (`upstream: https://host:port` or `http://host:port`).
 * Clients may speak TLS (terminated here with tls.cert/key, or a leaf minted by our CA for the SNI
 * name) or plain HTTP; the first bytes tell. The origin is connected (and, for https, verified)
 * before the client is answered: a down origin resets TLS clients before any handshake and gets
 * plain clients a 502 naming the reason.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import { ConfigError } from '../../errors.js';
import { resetConnection } from '../../net/splice.js';
import { ticketKeys } from '../../tls/ticket-keys.js';
import {
  describeError,
  emitConnectionEvent,
  type ListenerContext,
  openOrigin,
  peerAddress,
} from './context.js';
import { readFirstBytes } from './first-bytes.js';
import { endGracefully, send } from './io.js';
import { errorResponse, serializeProxyResponse } from './responses.js';
import { HttpSession, type Origin } from './session.js';
import { formatAuthority, parseAuthority } from './target.js';

export interface ReverseSetup {
  origin: Origin;
  /** The configured certificate for client TLS, or null to mint one per SNI name. */
  context: SecureContext | null;
}

/** Validates `upstream` and loads tls.cert/key once at startup (errors name the config key). */
export function reverseSetup(ctx: ListenerContext): ReverseSetup {
  const key = `listeners.${ctx.cfg.name}`;
  const up = ctx.cfg.upstream;
  if (!up)
    throw new ConfigError(
      `${key}.upstream`,
      'reverse mode needs upstream: https://host:port or http://host:port',
    );
  const m = /^(?:(https?):\/\/)?([^/]+?)\/?$/.exec(up);
  const tls = m?.[1] === 'https';
  const authority = m ? parseAuthority(m[2]!, tls ? 443 : 80) : null;
  if (!authority) throw new ConfigError(`${key}.upstream`, `not an origin URL: "${up}"`);
  const { cert, key: keyFile } = ctx.cfg.tls;
  if (Boolean(cert) !== Boolean(keyFile))
    throw new ConfigError(`${key}.tls`, 'tls.cert and tls.key go together');
  let context: SecureContext | null = null;
  if (cert && keyFile) {
    try {
      const certPem = readFileSync(cert);
      context = createSecureContext({
        cert: certPem,
        key: readFileSync(keyFile),
        ticketKeys: ticketKeys('listener', ctx.cfg.name, certPem),
      });
    } catch (e) {
      throw new ConfigError(`${key}.tls`, `cannot load certificate/key: ${(e as Error).message}`);
    }
  }
  return { origin: { ...authority, tls }, context };
}

export async function handleReverse(
  ctx: ListenerContext,
  setup: ReverseSetup,
  client: Socket,
): Promise<void> {
  const clientAddress = peerAddress(client);
  const server = formatAuthority(setup.origin.host, setup.origin.port);
  const first = await readFirstBytes(client, { timeoutMs: ctx.cfg.headerTimeout });
  if (first.kind === 'silent') {
    client.destroy();
    return;
  }
  if (first.kind !== 'tls' && first.kind !== 'http') {
    ctx.deps.logger.info(
      {
        listener: ctx.cfg.name,
        client: clientAddress,
        firstBytes: first.data.subarray(0, 16).toString('hex'),
      },
      'reverse: neither HTTP nor TLS',
    );
    client.destroy();
    return;
  }
  let upstream: Duplex;
  try {
    upstream = await openOrigin(ctx, setup.origin);
  } catch (e) {
    const reason = describeError(e);
    emitConnectionEvent(ctx, {
      kind: 'upstream-failure',
      action: 'error',
      client: clientAddress,
      server,
      reason,
    });
    if (first.kind === 'tls') resetConnection(client);
    else {
      await send(
        client,
        serializeProxyResponse(errorResponse(502, `upstream ${server} failed: ${reason}`)),
      ).catch(() => {});
      endGracefully(client);
    }
    return;
  }
  upstream.on('error', () => {});

  if (first.kind === 'http') {
    const session = new HttpSession(ctx.env, {
      client,
      clientAddress,
      scheme: 'http',
      origin: setup.origin,
      upstream,
      head: first.data,
    });
    // Handed over, not awaited: this frame would keep the first upstream for the connection's life.
    return session.run().then(() => {});
  }
  const sni = first.kind === 'tls' ? first.hello?.sni : undefined;
  const context: SecureContext =
    setup.context ??
    (await ctx.deps.tls.minter.secureContext({ dnsNames: [sni || setup.origin.host], ipAddresses: [] }));
  client.unshift(first.data);
  const tlsClient = new TLSSocket(client, {
    isServer: true,
    secureContext: context,
    ALPNProtocols: ['http/1.1'],
  });
  tlsClient.on('error', () => {});
  const ok = await new Promise<boolean>((resolve) => {
    tlsClient.once('secure', () => resolve(true));
    tlsClient.once('error', () => resolve(false));
    tlsClient.once('close', () => resolve(false));
  });
  if (!ok) {
    upstream.destroy();
    client.destroy();
    return;
  }
  const session = new HttpSession(ctx.env, {
    client: tlsClient,
    clientAddress,
    scheme: 'https',
    origin: setup.origin,
    upstream,
  });
  return session.run().then(() => {});
}
