/**
 * AUTH relayed between client and server (RFC 4954): the server runs the exchange; the relay passes
 * each 334 challenge and each client response along, never logging either (they are credentials).
 */
import { PeerClosedError, type SmtpChannel } from './channel.js';
import type { SmtpCommand } from './command.js';
import type { Reply } from './reply.js';
import type { ServerLeg } from './server-leg.js';

/** RFC 4954 §4: an AUTH exchange line may be 12288 octets. */
const MAX_AUTH_LINE = 12_288;

export type AuthResult =
  /** The server's final reply to the exchange. */
  | { kind: 'done'; reply: Reply }
  /** The client sent an overlong response; the exchange was cancelled with the server (`*`). */
  | { kind: 'toolong'; serverReply: Reply };

export async function relayAuth(
  cmd: SmtpCommand,
  client: SmtpChannel,
  server: ServerLeg,
  idleTimeoutMs: number,
): Promise<AuthResult> {
  let r = await server.send(cmd.raw);
  while (r.code === 334) {
    await client.sendReply(r);
    const saved = client.reader.maxLine;
    client.reader.maxLine = MAX_AUTH_LINE;
    const ev = await client.next(idleTimeoutMs).finally(() => {
      client.reader.maxLine = saved;
    });
    if (!ev) throw new PeerClosedError('client');
    // RFC 4954 §4: cancel the exchange with the server, tell the client its line was too long.
    if (ev.type !== 'line') return { kind: 'toolong', serverReply: await server.send('*') };
    r = await server.send(ev.line);
  }
  return { kind: 'done', reply: r };
}
