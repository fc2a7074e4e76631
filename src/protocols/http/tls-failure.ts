/**
 * When the origin behind an explicit-proxy CONNECT cannot be reached over TLS or cannot be trusted
 * (expired, wrong name, unknown issuer), the client has already been told "200 Connection
 * established" and is in the middle of its TLS handshake. Resetting would hide the reason; a
 * browser shows nothing useful. Instead we finish the handshake with a leaf minted by our CA for the
 * requested name and answer the requests on that connection with a 502 page naming the reason
 * (DESIGN 4.3), as mitmproxy and Squid's error pages do.
 */
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { ListenerContext } from './context.js';
import { endGracefully, MessageReader, send } from './io.js';
import { HttpParser } from './parser.js';
import { errorResponse, serializeProxyResponse } from './responses.js';

export async function serveTlsFailure(
  ctx: ListenerContext,
  client: Socket,
  name: string,
  reason: string,
): Promise<void> {
  let context: SecureContext;
  try {
    context = await ctx.deps.tls.minter.secureContext({ dnsNames: [name], ipAddresses: [] });
  } catch {
    client.destroy();
    return;
  }
  const tls = new TLSSocket(client, { isServer: true, secureContext: context, ALPNProtocols: ['http/1.1'] });
  tls.on('error', () => tls.destroy());
  const reader = new MessageReader(tls, new HttpParser('request', { maxHeaderSize: ctx.cfg.maxHeaderSize }));
  const timer = setTimeout(() => tls.destroy(), ctx.cfg.headerTimeout);
  try {
    const ev = await reader.next();
    if (ev?.type !== 'request-head') {
      tls.destroy();
      return;
    }
    const page = errorResponse(502, `the origin ${name} could not be used: ${reason}`);
    await send(tls, serializeProxyResponse(page, ev.head.version, ev.head.method === 'HEAD'));
    endGracefully(tls);
  } catch {
    tls.destroy();
  } finally {
    clearTimeout(timer);
  }
}
