/**
 * Stream mode (ghostunnel-like): one authenticated TLS connection is joined to one backend TCP
 * connection. The backend is dialled only after the client has authenticated, so anonymous clients
 * cannot open backend connections or learn whether the backend is up. With `proxyProtocol: true`
 * the backend first receives a PROXY v2 header naming the client and its certificate (proxy-v2.ts).
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { formatHostPort, type UpstreamFirstConnector } from '../../net/connect.js';
import { splice } from '../../net/splice.js';
import { emitEvent, type TunnelContext } from './context.js';
import type { ClientIdentity } from './identity.js';
import {
  encodeProxyV2,
  PP2_CLIENT_CERT_CONN,
  PP2_CLIENT_CERT_SESS,
  PP2_CLIENT_SSL,
  PP2_SUBTYPE_SSL_CIPHER,
  PP2_SUBTYPE_SSL_CN,
  PP2_SUBTYPE_SSL_VERSION,
  PP2_TYPE_AUTHORITY,
  PP2_TYPE_SCANGATE_DNS,
  PP2_TYPE_SCANGATE_SHA256,
  PP2_TYPE_SCANGATE_SUBJECT,
  PP2_TYPE_SCANGATE_URI,
  sslTlv,
  type Tlv,
  tlv,
} from './proxy-v2.js';

/** The PROXY v2 header for one client connection. */
export function proxyHeaderFor(socket: TLSSocket, id: ClientIdentity): Buffer {
  const sub: Tlv[] = [tlv(PP2_SUBTYPE_SSL_VERSION, socket.getProtocol() ?? '')];
  if (id.cn[0]) sub.push(tlv(PP2_SUBTYPE_SSL_CN, id.cn[0]));
  const cipher = socket.getCipher()?.standardName;
  if (cipher) sub.push(tlv(PP2_SUBTYPE_SSL_CIPHER, cipher));
  const client =
    PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | (socket.isSessionReused() ? PP2_CLIENT_CERT_SESS : 0);
  const tlvs: Tlv[] = [sslTlv({ client, verify: 0, sub })];
  const sni = (socket as TLSSocket & { servername?: string | false }).servername;
  if (sni) tlvs.push(tlv(PP2_TYPE_AUTHORITY, sni));
  tlvs.push(tlv(PP2_TYPE_SCANGATE_SUBJECT, id.subject));
  for (const d of id.dns) tlvs.push(tlv(PP2_TYPE_SCANGATE_DNS, d));
  for (const u of id.uri) tlvs.push(tlv(PP2_TYPE_SCANGATE_URI, u));
  tlvs.push(tlv(PP2_TYPE_SCANGATE_SHA256, id.fingerprint256));
  const src = socket.remoteAddress ? { address: socket.remoteAddress, port: socket.remotePort ?? 0 } : null;
  const dst = socket.localAddress ? { address: socket.localAddress, port: socket.localPort ?? 0 } : null;
  return encodeProxyV2(src, dst, tlvs);
}

export async function runStreamSession(
  ctx: TunnelContext,
  connector: UpstreamFirstConnector,
  socket: TLSSocket,
  id: ClientIdentity,
  client: string,
): Promise<void> {
  let backend: Socket;
  try {
    backend = await connector.connect(ctx.backend.host, ctx.backend.port, {
      timeoutMs: ctx.cfg.backend.connectTimeout,
      signal: ctx.shutdown,
    });
  } catch (e) {
    emitEvent(ctx, {
      kind: 'upstream-failure',
      action: 'error',
      reason: (e as Error).message,
      client,
      object: id.cn[0],
    });
    socket.destroy();
    return;
  }
  if (ctx.cfg.proxyProtocol) backend.write(proxyHeaderFor(socket, id));
  const result = await splice(socket, backend, { idleTimeoutMs: ctx.cfg.idleTimeout });
  ctx.log.debug(
    { client, backend: formatHostPort(ctx.backend.host, ctx.backend.port), ...result },
    'tunnel stream closed',
  );
}
