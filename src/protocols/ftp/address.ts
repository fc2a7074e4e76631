/**
 * Data-connection addresses in FTP's four notations, parsed and formatted without I/O:
 * - `PORT h1,h2,h3,h4,p1,p2` and `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` (RFC 959 §4.1.2,
 *   port = p1·256 + p2). Servers vary the 227 text, so the numbers are searched for anywhere in it
 *   (RFC 1123 §4.1.2.6).
 * - `EPRT |1|132.235.1.2|6275|` / `EPRT |2|::1|6275|` and `229 Entering Extended Passive Mode
 *   (|||6446|)` (RFC 2428 §2, §3): any printable delimiter, the same one throughout.
 */
import { isIP } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

/** Why an address argument was refused; the session turns it into 501 (syntax) or 522 (family). */
export type AddressError = { error: 'syntax' | 'family'; reason: string };

function isByte(s: string): boolean {
  return /^\d{1,3}$/.test(s) && Number(s) <= 255;
}

/** h1,h2,h3,h4,p1,p2 (whitespace around numbers tolerated, as servers do). */
function parseSix(text: string): HostPort | null {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length !== 6 || !parts.every(isByte)) return null;
  const n = parts.map(Number);
  const port = n[4]! * 256 + n[5]!;
  if (port === 0) return null;
  return { host: n.slice(0, 4).join('.'), port };
}

export function parsePortArg(arg: string): HostPort | AddressError {
  return parseSix(arg) ?? { error: 'syntax', reason: 'PORT expects h1,h2,h3,h4,p1,p2' };
}

export function formatPortArg(a: HostPort): string {
  return `${a.host.split('.').join(',')},${a.port >> 8},${a.port & 255}`;
}

/** The address in a 227 reply text; null when there is none. */
export function parse227(text: string): HostPort | null {
  const m = /(\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3})/.exec(text);
  return m ? parseSix(m[1]!) : null;
}

export function format227(a: HostPort): string {
  return `Entering Passive Mode (${formatPortArg(a)}).`;
}

function parsePortNumber(s: string): number | null {
  if (!/^\d{1,5}$/.test(s)) return null;
  const p = Number(s);
  return p >= 1 && p <= 65_535 ? p : null;
}

export function parseEprtArg(arg: string): (HostPort & { family: 4 | 6 }) | AddressError {
  const d = arg[0];
  if (!d || d.charCodeAt(0) < 33 || d.charCodeAt(0) > 126)
    return { error: 'syntax', reason: 'EPRT expects <d>proto<d>address<d>port<d>' };
  const fields = arg.split(d);
  // "" proto addr port "" — the argument starts and ends with the delimiter.
  if (fields.length !== 5 || fields[0] !== '' || fields[4] !== '')
    return { error: 'syntax', reason: 'EPRT expects <d>proto<d>address<d>port<d>' };
  const [, proto, host, portText] = fields as [string, string, string, string, string];
  const port = parsePortNumber(portText);
  if (port === null) return { error: 'syntax', reason: 'EPRT port must be 1-65535' };
  if (proto !== '1' && proto !== '2')
    return { error: 'family', reason: 'Network protocol not supported, use (1,2)' };
  const family = isIP(host);
  if ((proto === '1' && family !== 4) || (proto === '2' && family !== 6))
    return { error: 'syntax', reason: `EPRT address is not an IPv${proto === '1' ? 4 : 6} address` };
  return { host, port, family: family as 4 | 6 };
}

export function formatEprtArg(a: HostPort): string {
  return `|${isIP(a.host) === 6 ? 2 : 1}|${a.host}|${a.port}|`;
}

/** The port in a 229 reply text: `(<d><d><d>port<d>)`, the same delimiter four times. */
export function parse229(text: string): number | null {
  const m = /\(([\x21-\x7e])\1\1(\d{1,5})\1\)/.exec(text);
  return m ? parsePortNumber(m[2]!) : null;
}

export function format229(port: number): string {
  return `Entering Extended Passive Mode (|||${port}|)`;
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as plain IPv4; other addresses unchanged. */
export function plainAddress(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

export function sameAddress(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b) return false;
  return plainAddress(a).toLowerCase() === plainAddress(b).toLowerCase();
}

/** "50000-50100" → {min, max}; throws RangeError when the range is empty or out of 1-65535. */
export function parsePortRange(text: string): { min: number; max: number } {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  const min = m ? Number(m[1]) : Number.NaN;
  const max = m ? Number(m[2]) : Number.NaN;
  if (!(min >= 1 && max <= 65_535 && min <= max))
    throw new RangeError(`"${text}" is not a port range like 50000-50100`);
  return { min, max };
}
