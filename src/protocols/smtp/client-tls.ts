/**
 * TLS on the client leg: implicit (SMTPS, RFC 8314 §3.3: the handshake comes first) or STARTTLS
 * (RFC 3207), with the certificate `SmtpContext.clientContext` chooses. Handshakes are bounded by
 * the listener's headerTimeout so a client cannot hold a session open by stalling inside TLS.
 */
import type { Socket } from 'node:net';
import { type PeerCertificate, TLSSocket } from 'node:tls';
import { observeTls } from '../../admin/metrics.js';
import { resetConnection } from '../../net/splice.js';
import { withTimeout } from '../../net/timeouts.js';
import type { SmtpChannel } from './channel.js';
import type { SmtpContext } from './context.js';
import { type Reply, reply } from './reply.js';

/**
 * Implicit TLS: the ClientHello is already waiting, unread, in the socket (nothing has read from
 * it); TLSSocket takes over the socket with whatever it has buffered.
 */
export async function acceptImplicitTls(
  ctx: SmtpContext,
  socket: Socket,
  upstreamCert: PeerCertificate | null,
): Promise<TLSSocket> {
  const context = await ctx.clientContext(upstreamCert);
  const tls = new TLSSocket(socket, { isServer: true, secureContext: context });
  tls.on('error', () => {});
  await clientHandshake(ctx, tls);
  return tls;
}

/**
 * The server cannot be reached: the client is reset (the default, as a refused connection looks) or,
 * with `unreachable: 421`, greeted with a 421 (over TLS first for an implicit-TLS listener).
 */
export async function refuseClient(
  ctx: SmtpContext,
  socket: Socket,
  channel: (s: Socket | TLSSocket) => SmtpChannel,
): Promise<void> {
  if (ctx.cfg.unreachable !== '421') {
    resetConnection(socket);
    return;
  }
  try {
    const client = channel(
      ctx.cfg.tls.client === 'implicit' ? await acceptImplicitTls(ctx, socket, null) : socket,
    );
    await client.sendReply(reply(421, `4.4.1 ${ctx.hostname} mail server not available; try again later`));
    client.end();
  } catch {
    // The client went away or failed its handshake; nothing more to tell it.
    socket.destroy();
  }
}

export type StartTlsResult =
  | { ok: true; dropped: number }
  /** No certificate: the client must be told 454 and the session closed. */
  | { ok: false; refuse: Reply; reason: string }
  /** The handshake failed: the client leg is unusable. */
  | { ok: false; refuse: null; reason: string; dropped: number };

/**
 * STARTTLS on the client leg: sends the 220 and wraps the socket at once. Bytes the client pipelined
 * in plaintext after STARTTLS are dropped (CVE-2011-0411 class) and counted in `dropped`.
 */
export async function startClientTls(
  ctx: SmtpContext,
  client: SmtpChannel,
  upstreamCert: PeerCertificate | null,
): Promise<StartTlsResult> {
  let context: Awaited<ReturnType<SmtpContext['clientContext']>>;
  try {
    context = await ctx.clientContext(upstreamCert);
  } catch (e) {
    return {
      ok: false,
      refuse: reply(454, '4.7.0 TLS not available due to temporary reason'),
      reason: `no certificate for the client leg: ${(e as Error).message}`,
    };
  }
  // The 220 is written just before the socket is wrapped: nothing the client sends after reading it
  // can reach the plaintext reader.
  void client.sendReply(reply(220, '2.0.0 Ready to start TLS')).catch(() => {});
  const { tls, dropped } = client.upgrade(
    (raw) => new TLSSocket(raw, { isServer: true, secureContext: context }),
  );
  try {
    await clientHandshake(ctx, tls);
    return { ok: true, dropped };
  } catch (e) {
    return { ok: false, refuse: null, reason: (e as Error).message, dropped };
  }
}

/** The client leg's handshake, bounded by headerTimeout and counted in the TLS metrics. */
function clientHandshake(ctx: SmtpContext, tls: TLSSocket): Promise<void> {
  return observeTls(
    ctx.cfg.name,
    'client',
    withTimeout(handshake(tls), ctx.cfg.headerTimeout, () => new Error('TLS handshake timeout')),
  );
}

function handshake(tls: TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    const onSecure = () => {
      tls.off('error', onError);
      tls.off('close', onClose);
      resolve();
    };
    const onError = (e: Error) => {
      tls.off('secure', onSecure);
      tls.off('close', onClose);
      reject(e);
    };
    const onClose = () => {
      tls.off('secure', onSecure);
      tls.off('error', onError);
      reject(new Error('client closed during the TLS handshake'));
    };
    tls.once('secure', onSecure);
    tls.once('error', onError);
    tls.once('close', onClose);
  });
}
