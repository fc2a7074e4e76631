/**
 * One request/response exchange as the session sees it (where it goes, what to call it in events
 * and block pages), and the small decisions around it: keep-alive, the verdict page, object names.
 */
import type { Verdict } from '../../engine/types.js';
import { hasToken, type RawHeaders } from './headers.js';
import { blockResponse, type ProxyResponse, scanErrorResponse } from './responses.js';
import { formatAuthority } from './target.js';

export interface Origin {
  host: string;
  port: number;
  /** Speak TLS to the origin (verified by the TLS runtime). */
  tls: boolean;
  /** TLS server name to send and verify, when it differs from `host` (an IP from SO_ORIGINAL_DST). */
  servername?: string;
}

export interface Exchange {
  url: string;
  origin: Origin;
  scheme: 'http' | 'https';
  clientVersion: string;
  method: string;
}

export function originKey(o: Origin): string {
  return `${o.tls ? 'https' : 'http'}://${formatAuthority(o.host, o.port)}`;
}

/** Connection: close, or HTTP/1.0 without keep-alive (RFC 9112 §9.3). */
export function wantsClose(head: { version: string; headers: RawHeaders }): boolean {
  if (hasToken(head.headers, 'connection', 'close')) return true;
  return head.version === '1.0' && !hasToken(head.headers, 'connection', 'keep-alive');
}

export function verdictResponse(
  url: string,
  v: Exclude<Verdict, { status: 'clean' }>,
  close: boolean,
): ProxyResponse {
  if (v.status === 'infected')
    return blockResponse({ url, signature: v.signature, location: v.location, close });
  return scanErrorResponse({ url, reason: v.reason, close });
}

/** The last path segment of a URL (decoded when possible), for the verdict's location. */
export function objectName(url: string, fallback: string): string {
  const path = url.replace(/^[a-z]+:\/\/[^/]*/, '').split('?')[0] ?? '';
  const last = path.split('/').pop() ?? '';
  try {
    return decodeURIComponent(last) || fallback;
  } catch {
    return last || fallback;
  }
}
