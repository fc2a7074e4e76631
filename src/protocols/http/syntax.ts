/**
 * Grammar pieces of RFC 9110 / RFC 9112 the parser checks against: tokens, field values,
 * request-targets, versions, and the framing fields (Transfer-Encoding, Content-Length, chunk-ext).
 */
import type { RawHeaders } from './headers.js';

export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible ASCII, SP, HTAB and obs-text; CR, LF and NUL are refused (RFC 9110 §5.5). */
export const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
export const TARGET = /^[\x21-\x7e\x80-\xff]+$/;
export const MAX_SAFE_DIGITS = 15;

export function statusFor(code: string): number {
  switch (code) {
    case 'ERR_HTTP_URI_TOO_LONG':
      return 414;
    case 'ERR_HTTP_HEADER_TOO_LARGE':
      return 431;
    case 'ERR_HTTP_TRANSFER_CODING':
      return 501;
    case 'ERR_HTTP_VERSION':
      return 505;
    default:
      return 400;
  }
}

export function parseVersion(proto: string): string | null {
  const m = /^HTTP\/(\d)\.(\d)$/.exec(proto);
  return m ? `${m[1]}.${m[2]}` : null;
}

/** The transfer codings in order, lower-cased; null when the field is absent. */
export function transferCodings(headers: RawHeaders): string[] | null {
  let seen = false;
  const out: string[] = [];
  for (const [n, v] of headers) {
    if (n.length !== 17 || n.toLowerCase() !== 'transfer-encoding') continue;
    seen = true;
    for (const p of v.split(',')) {
      const t = p.trim().toLowerCase();
      if (t) out.push(t.split(';')[0]!.trim());
    }
  }
  if (!seen) return null;
  return out.length ? out : ['(empty)'];
}

/** The Content-Length (all copies must agree, §6.3 item 5); null when absent. */
export function contentLength(headers: RawHeaders): number | null | 'invalid' {
  let value: string | null = null;
  for (const [n, v] of headers) {
    if (n.length !== 14 || n.toLowerCase() !== 'content-length') continue;
    for (const p of v.split(',')) {
      const t = p.trim();
      if (!/^\d+$/.test(t)) return 'invalid';
      const norm = t.replace(/^0+(?=.)/, '');
      if (norm.length > MAX_SAFE_DIGITS) return 'invalid';
      if (value !== null && value !== norm) return 'invalid';
      value = norm;
    }
  }
  return value === null ? null : Number(value);
}

/** chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ). */
export function validChunkExt(ext: string): boolean {
  return /^(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)*[ \t]*$/.test(
    ext,
  );
}

export function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}
