/**
 * What the proxy itself answers (DESIGN 4.3): the 403 block page naming the threat with the
 * X-Scangate-Verdict header, 503 on a scanner error, 502 naming why the upstream failed, and the
 * 4xx/5xx for requests the parser refused.
 */
import type { RawHeaders } from './headers.js';
import { reasonPhrase, serializeResponseHead } from './serialize.js';

export const VERDICT_HEADER = 'X-Scangate-Verdict';

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A quoted-string for a header parameter (RFC 9110 §5.6.4), restricted to visible ASCII. */
function quoted(s: string): string {
  return `"${s.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, '\\$&')}"`;
}

function page(title: string, paragraphs: string[]): Buffer {
  const body = paragraphs.map((p) => `<p>${p}</p>`).join('\n');
  return Buffer.from(
    `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>\n` +
      `<body style="font-family:sans-serif;max-width:40em;margin:3em auto">\n<h1>${escapeHtml(title)}</h1>\n${body}\n` +
      '<hr><p><small>scangate</small></p></body></html>\n',
    'utf8',
  );
}

export interface ProxyResponse {
  status: number;
  headers: RawHeaders;
  body: Buffer;
}

function response(status: number, body: Buffer, extra: RawHeaders, close: boolean): ProxyResponse {
  const headers: RawHeaders = [
    ['Content-Type', 'text/html; charset=utf-8'],
    ['Content-Length', String(body.length)],
    ['Cache-Control', 'no-store'],
    ...extra,
  ];
  if (close) headers.push(['Connection', 'close']);
  return { status, headers, body };
}

export function blockResponse(opts: {
  url: string;
  signature: string;
  location: string[];
  close: boolean;
}): ProxyResponse {
  const where = opts.location.length > 1 ? ` (in ${escapeHtml(opts.location.slice(1).join(' / '))})` : '';
  const body = page('Blocked: malware detected', [
    `The object <code>${escapeHtml(opts.url)}</code> was blocked because it contains <strong>${escapeHtml(opts.signature)}</strong>${where}.`,
    'Nothing of it was delivered. If you believe this is a mistake, contact your administrator.',
  ]);
  return response(403, body, [[VERDICT_HEADER, `infected; signature=${quoted(opts.signature)}`]], opts.close);
}

export function scanErrorResponse(opts: { url: string; reason: string; close: boolean }): ProxyResponse {
  const body = page('Temporarily unavailable: the object could not be scanned', [
    `<code>${escapeHtml(opts.url)}</code> could not be scanned (${escapeHtml(opts.reason)}), so it was not delivered.`,
    'Please try again later.',
  ]);
  return response(
    503,
    body,
    [
      [VERDICT_HEADER, `error; reason=${quoted(opts.reason)}`],
      ['Retry-After', '10'],
    ],
    opts.close,
  );
}

export function errorResponse(status: number, message: string, close = true): ProxyResponse {
  const body = page(`${status} ${reasonPhrase(status)}`, [escapeHtml(message)]);
  return response(status, body, [], close);
}

export function serializeProxyResponse(r: ProxyResponse, version = '1.1', headOnly = false): Buffer[] {
  const head = serializeResponseHead({
    version,
    status: r.status,
    reason: reasonPhrase(r.status),
    headers: r.headers,
  });
  return headOnly ? [head] : [head, r.body];
}
