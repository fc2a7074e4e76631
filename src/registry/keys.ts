/**
 * Sender public keys and the proof of a registration: the sender signs the 128 ASCII bytes of the
 * message signature with its private key (Ed25519, RFC 8032 — or RSA ≥ 2048 bits, PKCS #1 v1.5
 * with SHA-256), so `openssl pkeyutl -sign -rawin` can produce one as well as `scangate register`.
 */
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { invalid } from './errors.js';

export type KeyAlgorithm = 'ed25519' | 'rsa';
export const MIN_RSA_BITS = 2048;
const MAX_KEY_TEXT = 16_384;

// DER prefix of an Ed25519 SubjectPublicKeyInfo; a bare 32-byte key is wrapped in it (RFC 8410 §4).
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface ParsedPublicKey {
  id: string;
  algorithm: KeyAlgorithm;
  /** SubjectPublicKeyInfo DER, base64. */
  spki: string;
  key: KeyObject;
}

/** Strict base64 (standard or URL alphabet, padding optional): no whitespace games, no junk. */
export function decodeBase64Strict(text: string, field: string): Buffer {
  const t = text.replace(/\s+/g, '');
  if (
    t.length === 0 ||
    !/^[A-Za-z0-9+/_-]+={0,2}$/.test(t) ||
    (t.includes('=') && t.length % 4 !== 0) ||
    t.length % 4 === 1
  )
    throw invalid(field, 'malformed base64');
  const buf = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  // Round-trip check: Node's decoder silently drops what it cannot use.
  if (
    buf.toString('base64').replace(/=+$/, '') !== t.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '')
  )
    throw invalid(field, 'malformed base64');
  return buf;
}

/** A public key given as PEM, base64 SPKI DER, or a base64 raw 32-byte Ed25519 key. */
export function parsePublicKey(input: unknown, field = 'publicKey'): ParsedPublicKey {
  if (typeof input !== 'string' || input.length === 0) throw invalid(field, 'expected a string');
  if (input.length > MAX_KEY_TEXT) throw invalid(field, 'too long for a public key');
  let key: KeyObject;
  try {
    if (input.includes('-----BEGIN')) key = createPublicKey({ key: input, format: 'pem' });
    else {
      let der = decodeBase64Strict(input, field);
      if (der.length === 32) der = Buffer.concat([ED25519_SPKI_PREFIX, der]);
      key = createPublicKey({ key: der, format: 'der', type: 'spki' });
    }
  } catch (e) {
    if ((e as { status?: number }).status === 400) throw e;
    throw invalid(field, 'not a public key (expected Ed25519 or RSA, PEM or base64 DER)');
  }
  let algorithm: KeyAlgorithm;
  if (key.asymmetricKeyType === 'ed25519') algorithm = 'ed25519';
  else if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS)
      throw invalid(field, `RSA key of ${bits} bits; at least ${MIN_RSA_BITS} required`);
    algorithm = 'rsa';
  } else throw invalid(field, `unsupported key type ${key.asymmetricKeyType ?? 'unknown'} (Ed25519 or RSA)`);
  const der = key.export({ format: 'der', type: 'spki' });
  return { id: keyId(der), algorithm, spki: der.toString('base64'), key };
}

export function keyId(spkiDer: Buffer): string {
  return createHash('sha256').update(spkiDer).digest('hex').slice(0, 32);
}

export function publicKeyFromStored(spki: string): KeyObject {
  return createPublicKey({ key: Buffer.from(spki, 'base64'), format: 'der', type: 'spki' });
}

/** True when `proof` is the key's signature over the 128 ASCII bytes of `signature`. */
export function verifyProof(key: KeyObject, signature: string, proof: Buffer): boolean {
  const data = Buffer.from(signature, 'ascii');
  try {
    return key.asymmetricKeyType === 'ed25519'
      ? verify(null, data, key, proof)
      : verify('sha256', data, key, proof);
  } catch {
    return false;
  }
}

/** The sender side: proof for `signature` with a private key (PEM text or KeyObject). */
export function makeProof(privateKey: KeyObject, signature: string): Buffer {
  const data = Buffer.from(signature, 'ascii');
  return privateKey.asymmetricKeyType === 'ed25519'
    ? sign(null, data, privateKey)
    : sign('sha256', data, privateKey);
}
