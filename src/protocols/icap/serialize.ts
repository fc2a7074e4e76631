/**
 * Writing ICAP/1.0 responses (RFC 3507 §4.3.3, §4.4): the status line and header fields, then the
 * encapsulated HTTP heads laid out by an Encapsulated header, then a chunked body. Every response
 * but 100 Continue carries ISTag (§4.7) so a client can tell which signature database judged it.
 */
import type { RawHeaders } from '../http/headers.js';
import { formatEncapsulated } from './encapsulated.js';
import type { BodyEntity } from './messages.js';
import { icapReason } from './messages.js';

export const SERVER = 'scangate-icap/0.1';

export interface ResponseCommon {
  istag: string;
  /** Ask the client to close after this response (we will). */
  close?: boolean;
}

function head(status: number, common: ResponseCommon, fields: RawHeaders): Buffer {
  let s = `ICAP/1.0 ${status} ${icapReason(status)}\r\n`;
  s += `Date: ${new Date().toUTCString()}\r\nServer: ${SERVER}\r\nISTag: ${common.istag}\r\n`;
  for (const [n, v] of fields) s += `${n}: ${v}\r\n`;
  if (common.close) s += 'Connection: close\r\n';
  return Buffer.from(`${s}\r\n`, 'latin1');
}

/** "100 Continue" after a preview: send the rest of the body (§4.5). No ISTag: it is not a final response. */
export const CONTINUE = Buffer.from('ICAP/1.0 100 Continue\r\n\r\n', 'latin1');

/** 204: the client's own copy is the answer (§4.6). */
export function noContent(common: ResponseCommon): Buffer {
  return head(204, common, [['Encapsulated', 'null-body=0']]);
}

/** An ICAP-level error (4xx/5xx); `reason` travels in X-Scangate-Reason for the operator's logs. */
export function errorReply(status: number, common: ResponseCommon, reason?: string): Buffer {
  const fields: RawHeaders = [['Encapsulated', 'null-body=0']];
  if (reason) fields.push(['X-Scangate-Reason', reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 200)]);
  return head(status, common, fields);
}

/** OPTIONS answer: its fields come from the service (options.ts). */
export function optionsReply(common: ResponseCommon, fields: RawHeaders): Buffer {
  return head(200, common, [...fields, ['Encapsulated', 'null-body=0']]);
}

/**
 * A 200 carrying HTTP heads and, unless `body` is 'null-body', a chunked body the caller writes
 * next (then the last chunk). Heads are written as given, so an echo is byte-identical.
 */
export function adaptedHead(
  common: ResponseCommon,
  heads: Array<{ name: 'req-hdr' | 'res-hdr'; raw: Buffer }>,
  body: BodyEntity | 'null-body',
): Buffer[] {
  const encapsulated = formatEncapsulated(
    heads.map((h) => ({ name: h.name, length: h.raw.length })),
    body,
  );
  return [head(200, common, [['Encapsulated', encapsulated]]), ...heads.map((h) => h.raw)];
}
