/**
 * Authentication of a finished TLS handshake: the client certificate must have verified against
 * clientCa (and the CRL), and its identity must pass the allow-list. Node's server is run with
 * rejectUnauthorized: false so that every refusal can be named in an event here, then the socket is
 * closed; nothing reaches the backend before this check says yes.
 */
import type { TLSSocket } from 'node:tls';
import { type AllowPolicy, type ClientIdentity, peerIdentity } from './identity.js';

export type AuthResult =
  | { ok: true; identity: ClientIdentity; by: string }
  | { ok: false; reason: string; detail: string; identity: ClientIdentity | null };

/** OpenSSL verification codes (as Node names them) grouped into the reasons events report. */
const REASONS: Record<string, string> = {
  CERT_REVOKED: 'revoked',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  UNABLE_TO_GET_CRL: 'crl-missing',
  CRL_HAS_EXPIRED: 'crl-expired',
  CRL_NOT_YET_VALID: 'crl-not-yet-valid',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted-issuer',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted-issuer',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted-issuer',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted-issuer',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted-issuer',
  CERT_SIGNATURE_FAILURE: 'bad-signature',
  INVALID_PURPOSE: 'wrong-key-usage',
  CERT_CHAIN_TOO_LONG: 'chain-too-long',
};

export function authenticate(socket: TLSSocket, policy: AllowPolicy): AuthResult {
  const identity = peerIdentity(socket);
  if (!identity)
    return { ok: false, reason: 'no-certificate', detail: 'client sent no certificate', identity };
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'UNKNOWN');
    return {
      ok: false,
      reason: REASONS[code] ?? code.toLowerCase().replace(/_/g, '-'),
      detail: `certificate did not verify: ${code}`,
      identity,
    };
  }
  const decision = policy.check(identity);
  if (!decision.allowed)
    return {
      ok: false,
      reason: 'not-allowed',
      detail: `certificate (cn=${identity.cn.join(',') || '-'} dns=${identity.dns.join(',') || '-'} uri=${identity.uri.join(',') || '-'}) matches no allow-list entry`,
      identity,
    };
  return { ok: true, identity, by: decision.by };
}
