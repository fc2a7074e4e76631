/**
 * Trimming the TLS sessions we keep for resumption toward upstream servers.
 *
 * Node hands a session out as OpenSSL's DER encoding (i2d_SSL_SESSION: a SEQUENCE of version,
 * protocol version, cipher, ids, secrets and optional [n]-tagged fields, ssl/ssl_asn1.c) and takes
 * it back only in that form; tls.connect decodes it twice (once in the TLSSocket constructor, once
 * in setSession). The encoding carries the server's certificate ([3] peer), and decoding that
 * certificate's public key through OpenSSL 3's decoder framework is nearly all of the cost:
 * ~390 µs per tls.connect with it, ~85 µs without (Node 20, OpenSSL 3.0, a P-256 leaf), about as
 * much as the rest of the gateway's work on a new connection.
 *
 * Only TLS 1.3 sessions are trimmed. Resuming one without the certificate is what Node expects
 * (its verifyError reports X509_V_OK for a resumed TLS 1.3 session with no peer certificate, the
 * PSK having authenticated the server); the caller keeps the certificate it verified beside the
 * session and only stores sessions of connections that passed verification. A TLS 1.2 session
 * without its certificate would resume as "unauthorized", so those are kept whole.
 */

const SEQUENCE = 0x30;
const INTEGER = 0x02;
/** [3] EXPLICIT Certificate OPTIONAL: the peer's certificate. */
const PEER_CERTIFICATE = 0xa3;
const TLS1_3_VERSION = 0x0304;

interface Tlv {
  tag: number;
  /** Offset of the value. */
  start: number;
  /** Offset past the value. */
  end: number;
}

/** The TLV at `at`, or null if it is not well-formed DER within `der` (lengths up to 3 bytes). */
function readTlv(der: Buffer, at: number): Tlv | null {
  if (at + 2 > der.length) return null;
  const first = der[at + 1]!;
  let length = first;
  let start = at + 2;
  if (first >= 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 3 || start + n > der.length) return null;
    length = 0;
    for (let k = 0; k < n; k++) length = length * 256 + der[start + k]!;
    start += n;
  }
  const end = start + length;
  return end <= der.length ? { tag: der[at]!, start, end } : null;
}

function derLength(n: number): number[] {
  if (n < 0x80) return [n];
  if (n < 0x100) return [0x81, n];
  if (n < 0x10000) return [0x82, n >> 8, n & 0xff];
  return [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
}

/**
 * The session without the server's certificate when it is a TLS 1.3 session; otherwise (TLS 1.2,
 * no certificate in it, or an encoding we do not recognise) the same buffer, untouched.
 */
export function withoutPeerCertificate(session: Buffer): Buffer {
  const outer = readTlv(session, 0);
  if (!outer || outer.tag !== SEQUENCE || outer.end !== session.length) return session;
  const kept: Buffer[] = [];
  let dropped = false;
  let index = 0;
  for (let at = outer.start; at < outer.end; index++) {
    const field = readTlv(session, at);
    if (!field) return session;
    // Field 1 is the protocol version (INTEGER, 0x0304 for TLS 1.3).
    if (index === 1) {
      const v = field.end - field.start === 2 ? session.readUInt16BE(field.start) : -1;
      if (field.tag !== INTEGER || v !== TLS1_3_VERSION) return session;
    }
    if (field.tag === PEER_CERTIFICATE) dropped = true;
    else kept.push(session.subarray(at, field.end));
    at = field.end;
  }
  if (!dropped) return session;
  const bodyLength = kept.reduce((n, b) => n + b.length, 0);
  return Buffer.concat([Buffer.from([SEQUENCE, ...derLength(bodyLength)]), ...kept]);
}
