/**
 * EHLO capabilities (RFC 5321 §4.1.1.1) as the client should see them: what the whole path — client
 * leg, relay, upstream leg — really supports, not what the upstream server alone offers.
 *
 * - STARTTLS is about the leg it is offered on: the server's own is removed (we speak TLS to it as
 *   configured), ours is added while the client leg is plaintext and configured for STARTTLS.
 * - AUTH is passed only when the client leg may carry credentials (TLS, or a listener configured
 *   without TLS on the client leg), so a client never sends a password in clear because of us.
 * - SIZE is the smaller of the server's and our own message limit.
 * - CHUNKING is ours (the relay takes BDAT, RFC 3030, and delivers with BDAT or DATA, whatever the
 *   server offers); the server's own is removed, as is BINARYMIME (content is held to CRLF lines,
 *   which DATA can carry).
 * - XCLIENT/XFORWARD would let a client tell the server who it is, with the relay's address vouching
 *   for it; TURN/ATRN reverse the roles. None of them pass.
 * - Extensions we do not know are dropped: an unknown one may change the framing we rely on.
 */
import type { Reply } from './reply.js';

export interface EhloPolicy {
  /** Offer STARTTLS on the client leg (configured `starttls` and not yet encrypted). */
  offerStartTls: boolean;
  /** Pass AUTH (client leg encrypted or configured `none`). */
  allowAuth: boolean;
  /** Our own message size limit in bytes. */
  maxMessageSize: number;
  /** Offer CHUNKING (BDAT) to the client. */
  offerChunking?: boolean;
}

/** Keywords passed unchanged (with their parameters), upper case. */
const PASSED = new Set([
  '8BITMIME',
  'SMTPUTF8',
  'PIPELINING',
  'DSN',
  'ENHANCEDSTATUSCODES',
  'DELIVERBY',
  'MT-PRIORITY',
  'FUTURERELEASE',
  'NO-SOLICITING',
  'MTRK',
  'RRVS',
  'LIMITS',
  'VRFY',
  'EXPN',
  'HELP',
  'ETRN',
  'REQUIRETLS',
  'CONPERM',
  'CONNEG',
]);

export function rewriteEhlo(r: Reply, policy: EhloPolicy): Reply {
  if (r.code !== 250) return r;
  const [greeting = '', ...caps] = r.lines;
  const out: string[] = [greeting];
  let sawSize = false;
  for (const line of caps) {
    const keyword = (line.split(/[ =]/)[0] ?? '').toUpperCase();
    if (keyword === 'SIZE') {
      sawSize = true;
      const server = Number(line.slice(5).trim());
      // "SIZE" or "SIZE 0" means no fixed limit (RFC 1870 §4).
      const limit =
        Number.isFinite(server) && server > 0
          ? Math.min(server, policy.maxMessageSize)
          : policy.maxMessageSize;
      out.push(`SIZE ${limit}`);
    } else if (keyword === 'AUTH') {
      if (policy.allowAuth) out.push(line);
    } else if (PASSED.has(keyword)) {
      out.push(line);
    }
  }
  if (!sawSize) out.push(`SIZE ${policy.maxMessageSize}`);
  if (policy.offerChunking) out.push('CHUNKING');
  if (policy.offerStartTls) out.push('STARTTLS');
  return { code: 250, lines: out };
}

/** The keywords of an EHLO reply (upper case), e.g. to learn whether the server offers STARTTLS. */
export function ehloKeywords(r: Reply): Set<string> {
  return new Set(r.lines.slice(1).map((l) => (l.split(/[ =]/)[0] ?? '').toUpperCase()));
}
