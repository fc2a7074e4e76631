/**
 * FEAT (RFC 2389 §3.2) as the client should see it: the server's features minus what belongs to the
 * server leg's own TLS (AUTH, PBSZ, PROT, CCC — the gateway terminates TLS per leg, RFC 4217 §6),
 * plus what the gateway itself provides on the client leg (AUTH TLS/PBSZ/PROT when the client leg
 * is explicit FTPS; EPSV/EPRT/PASV, which the gateway answers whatever the server supports).
 */
import type { FtpReply } from './reply.js';

const LEG_FEATURES = /^(AUTH|PBSZ|PROT|CCC|ADAT|CONF|ENC|MIC)\b/i;
const GATEWAY_DATA = ['EPRT', 'EPSV', 'PASV'];

export function rewriteFeat(r: FtpReply, clientTls: 'explicit' | 'implicit' | 'none'): FtpReply {
  if (r.code !== 211 || r.lines.length < 2) return r;
  const middle = r.lines.slice(1, -1);
  const features = middle.map((l) => l.trim()).filter((l) => l.length > 0 && !LEG_FEATURES.test(l));
  const have = new Set(features.map((f) => f.split(' ')[0]!.toUpperCase()));
  for (const f of GATEWAY_DATA) if (!have.has(f)) features.push(f);
  if (clientTls !== 'none') features.push('PBSZ', 'PROT');
  if (clientTls === 'explicit') features.push('AUTH TLS');
  features.sort();
  // RFC 2389 §3.2: each feature line starts with a single space.
  return { code: 211, lines: [r.lines[0]!, ...features.map((f) => ` ${f}`), r.lines[r.lines.length - 1]!] };
}
