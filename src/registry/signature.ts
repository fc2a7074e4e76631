/**
 * The message signature (issue 7, seed claim 8): sender, recipient, date and content in, 128 ASCII
 * characters out: lower-case hex SHA-512 over the canonical form
 *
 *     scangate-registry-signature:1 CRLF
 *     from: <canonical sender> CRLF
 *     to: <canonical recipient> CRLF
 *     date: YYYYMMDD CRLF
 *     CRLF
 *     <canonical body>
 *
 * all UTF-8. Addresses and the date are canonicalized by address.ts, the body by canonical.ts.
 * The version line lets a later form coexist with this one.
 */
import { createHash, type Hash } from 'node:crypto';
import { canonicalAddress, canonicalDate } from './address.js';
import { BodyCanonicalizer } from './canonical.js';
import { invalid } from './errors.js';

export const SIGNATURE_VERSION_LINE = 'scangate-registry-signature:1';
export const SIGNATURE_RE = /^[0-9a-f]{128}$/;

/** A signature as the API takes it: 128 hex characters, either case, stored lower-case. */
export function canonicalSignature(input: unknown): string {
  if (typeof input !== 'string' || !SIGNATURE_RE.test(input.toLowerCase()))
    throw invalid('signature', 'expected 128 hexadecimal characters');
  return input.toLowerCase();
}

export interface SignatureFields {
  from: string;
  to: string;
  date: string;
}

/** The header of the canonical form, with the inputs validated (throws RegistryError 400). */
export function canonicalPreamble(fields: SignatureFields): string {
  const from = canonicalAddress(fields.from, 'from');
  const to = canonicalAddress(fields.to, 'to');
  const date = canonicalDate(fields.date, 'date');
  return `${SIGNATURE_VERSION_LINE}\r\nfrom:${from}\r\nto:${to}\r\ndate:${date}\r\n\r\n`;
}

/** Incremental signature for content of any length: `update` with chunks, then `digest`. */
export class SignatureHasher {
  private readonly hash: Hash;
  private readonly body: BodyCanonicalizer;
  constructor(fields: SignatureFields) {
    this.hash = createHash('sha512').update(canonicalPreamble(fields), 'utf8');
    this.body = new BodyCanonicalizer((b) => this.hash.update(b));
  }
  update(chunk: Uint8Array | string): this {
    this.body.write(chunk);
    return this;
  }
  digest(): string {
    this.body.end();
    return this.hash.digest('hex');
  }
}

/** The 128-character signature of a message held in memory. */
export function messageSignature(fields: SignatureFields & { content: Uint8Array | string }): string {
  return new SignatureHasher(fields).update(fields.content).digest();
}

/** The signature of content read from a stream (a file, stdin), in bounded memory. */
export async function streamSignature(
  fields: SignatureFields,
  content: AsyncIterable<Uint8Array | string>,
): Promise<string> {
  const h = new SignatureHasher(fields);
  for await (const chunk of content) h.update(chunk);
  return h.digest();
}
