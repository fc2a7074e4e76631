/**
 * The server leg of an SMTP relay: connect (upstream first), read the greeting, and bring TLS up as
 * configured — implicit (SMTPS, RFC 8314) or STARTTLS (RFC 3207) done by the relay itself before the
 * client says anything, so the client leg and the server leg are encrypted independently.
 */

import type { Socket } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { observeTls } from '../../admin/metrics.js';
import type { SmtpListenerConfig } from '../../config/schema.js';
import { UpstreamError } from '../../errors.js';
import { formatHostPort, UpstreamFirstConnector } from '../../net/connect.js';
import type { TlsRuntime } from '../../tls/runtime.js';
import { connectUpstreamTls } from '../../tls/upstream.js';
import { SmtpChannel } from './channel.js';
import { ehloKeywords } from './ehlo.js';
import { type Reply, replySummary } from './reply.js';
import { REPLY_TIMEOUTS } from './timeouts.js';

/** Reply lines from a server: RFC 5321 §4.5.3.1.5 says 512; be generous, but bounded. */
export const MAX_REPLY_LINE = 8192;

export interface UpstreamLeg {
  channel: SmtpChannel;
  greeting: Reply;
  /** The server's certificate when the leg is TLS. */
  certificate: PeerCertificate | null;
  /** Bytes the server sent after its STARTTLS 220 and before the handshake (dropped). */
  injected: number;
}

export interface UpstreamTarget {
  host: string;
  port: number;
}

const connector = new UpstreamFirstConnector();

export async function openUpstream(
  target: UpstreamTarget,
  cfg: SmtpListenerConfig,
  tls: TlsRuntime,
  helloName: string,
): Promise<UpstreamLeg> {
  const where = formatHostPort(target.host, target.port);
  const tlsOptions = {
    host: target.host,
    port: target.port,
    verify: tls.upstream.verify,
    extraCa: tls.upstream.extraCa,
    timeoutMs: cfg.connectTimeout,
  };
  let socket: Socket | TLSSocket;
  let certificate: PeerCertificate | null = null;
  if (cfg.tls.upstream === 'implicit') {
    const up = await observeTls(cfg.name, 'upstream', connectUpstreamTls(tlsOptions));
    socket = up.socket;
    certificate = up.certificate;
  } else {
    socket = await connector.connect(target.host, target.port, { timeoutMs: cfg.connectTimeout });
  }
  const channel = new SmtpChannel(socket, `server ${where}`, MAX_REPLY_LINE);
  try {
    const greeting = await channel.readReply(REPLY_TIMEOUTS.greeting, `server ${where} (greeting)`);
    let injected = 0;
    if (cfg.tls.upstream === 'starttls' && greeting.code === 220) {
      await channel.write(`EHLO ${helloName}\r\n`);
      const ehlo = await channel.readReply(REPLY_TIMEOUTS.command);
      if (ehlo.code !== 250 || !ehloKeywords(ehlo).has('STARTTLS'))
        throw new UpstreamError(
          'ERR_UPSTREAM_TLS',
          `${where} does not offer STARTTLS (${replySummary(ehlo)})`,
        );
      await channel.write('STARTTLS\r\n');
      const ready = await channel.readReply(REPLY_TIMEOUTS.command);
      if (ready.code !== 220)
        throw new UpstreamError('ERR_UPSTREAM_TLS', `${where} refused STARTTLS (${replySummary(ready)})`);
      // Whatever followed the 220 in plaintext is an injected response (the client-side mirror of
      // CVE-2011-0411); upgrade() drops it before the handshake.
      let cert: PeerCertificate | null = null;
      injected = await channel.upgradeAsync(async (raw) => {
        const up = await observeTls(cfg.name, 'upstream', connectUpstreamTls({ ...tlsOptions, socket: raw }));
        cert = up.certificate;
        return up.socket;
      });
      certificate = cert;
    }
    return { channel, greeting, certificate, injected };
  } catch (e) {
    channel.destroy();
    throw e;
  }
}
