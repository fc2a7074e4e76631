/**
 * Mail addresses and dates as the registry canonicalizes them (README "Anti-phishing registry").
 * An address is an RFC 5322 addr-spec of at most 256 Unicode characters: NFC-normalized, the local
 * part kept as written (RFC 5321 §2.4: only the receiving host may fold its case), the domain
 * lower-cased, with a Punycode (A-label) domain shown in Unicode so both spellings sign alike.
 */
import { domainToUnicode } from 'node:url';
import { invalid } from './errors.js';

export const MAX_ADDRESS_CHARS = 256;

/** A UTF-16 surrogate without its partner: a JS string that is not Unicode text. */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// Controls, white space, and the characters that delimit an address in a header (<>,;"), which a
// canonical addr-spec never needs: quoted local parts with spaces are not supported.
const FORBIDDEN = /[\u0000-\u0020\u007f-\u009f<>,;"\\()[\]\u2028\u2029\s]/u;

/** Canonical form of an address; throws RegistryError (400, field) when it is not acceptable. */
export function canonicalAddress(input: unknown, field = 'address'): string {
  if (typeof input !== 'string') throw invalid(field, 'expected a string');
  if (LONE_SURROGATE.test(input)) throw invalid(field, 'not well-formed Unicode');
  const nfc = input.trim().normalize('NFC');
  // Count code points, not UTF-16 units: the limit is "256 Unicode characters".
  let chars = 0;
  for (const _ of nfc) if (++chars > MAX_ADDRESS_CHARS) break;
  if (chars > MAX_ADDRESS_CHARS) throw invalid(field, `longer than ${MAX_ADDRESS_CHARS} characters`);
  const at = nfc.lastIndexOf('@');
  if (at <= 0 || at === nfc.length - 1) throw invalid(field, 'expected local@domain');
  const local = nfc.slice(0, at);
  let domain = nfc.slice(at + 1).toLowerCase();
  if (FORBIDDEN.test(local) || FORBIDDEN.test(domain) || local.includes('@'))
    throw invalid(field, 'contains characters an address cannot have');
  if (domain.startsWith('.') || domain.endsWith('.') || domain.includes('..'))
    throw invalid(field, 'malformed domain');
  if (/(^|\.)xn--/.test(domain)) {
    const u = domainToUnicode(domain);
    if (!u) throw invalid(field, 'malformed IDNA domain');
    domain = u.normalize('NFC').toLowerCase();
  }
  return `${local}@${domain}`;
}

/** A date `YYYYMMDD` that exists on the (proleptic Gregorian) calendar; throws 400 otherwise. */
export function canonicalDate(input: unknown, field = 'date'): string {
  if (typeof input !== 'string' || !/^\d{8}$/.test(input)) throw invalid(field, 'expected 8 digits YYYYMMDD');
  const y = Number(input.slice(0, 4));
  const m = Number(input.slice(4, 6));
  const d = Number(input.slice(6, 8));
  if (y < 1 || m < 1 || m > 12 || d < 1 || d > daysInMonth(y, m))
    throw invalid(field, `${input} is not a calendar date`);
  return input;
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(m) ? 30 : 31;
}
