/**
 * The messages and events of the ICAP/1.0 request parser (RFC 3507). An ICAP request carries up to
 * two encapsulated HTTP heads (the request, the response) and one chunked body; the parser hands
 * the heads out parsed and keeps their raw bytes so an unmodified message can be echoed exactly.
 */
import type { ProtocolError } from '../../errors.js';
import type { RawHeaders } from '../http/headers.js';
import type { RequestHead, ResponseHead } from '../http/messages.js';

export type IcapMethod = 'OPTIONS' | 'REQMOD' | 'RESPMOD';

/** Entity names of the Encapsulated header (RFC 3507 §4.4.1). */
export type EntityName = 'req-hdr' | 'res-hdr' | 'req-body' | 'res-body' | 'null-body' | 'opt-body';
export type BodyEntity = 'req-body' | 'res-body' | 'opt-body';

export interface EncapsulatedEntity {
  name: EntityName;
  offset: number;
}

export interface EncapsulatedRequest {
  /** The HTTP request head exactly as received (ends with CRLF CRLF). */
  raw: Buffer;
  head: RequestHead;
}

export interface EncapsulatedResponse {
  raw: Buffer;
  head: ResponseHead;
}

export interface IcapRequest {
  method: IcapMethod;
  /** The ICAP URI as sent (icap://host:port/service?args). */
  uri: string;
  /** The service name: the URI path without its slashes ('avscan'), '' for the root. */
  service: string;
  headers: RawHeaders;
  encapsulated: EncapsulatedEntity[];
  reqHdr: EncapsulatedRequest | null;
  resHdr: EncapsulatedResponse | null;
  /** The chunked body that follows, or null (null-body, or no Encapsulated on OPTIONS). */
  body: BodyEntity | null;
  /** Preview bytes announced (§4.5) when a body follows; null when the whole body comes at once. */
  preview: number | null;
  /** The client accepts 204 outside a preview (§4.6, "Allow: 204"). */
  allow204: boolean;
  /** The client asked to close the connection after this exchange. */
  close: boolean;
}

export type IcapEvent =
  | { type: 'request'; request: IcapRequest }
  /** Body bytes with the ICAP chunk framing removed. */
  | { type: 'body'; data: Buffer }
  /**
   * The preview ended without ieof: the client waits for 100 Continue (then the parser must be told
   * continueBody()) or for a final response (then abandonBody(): the client sends nothing more).
   */
  | { type: 'preview-end' }
  /** The body (or the bodiless message) is complete; `ieof` when its last chunk said so. */
  | { type: 'end'; ieof: boolean }
  | { type: 'error'; error: ProtocolError };

const REASONS: Record<number, string> = {
  100: 'Continue',
  200: 'OK',
  204: 'No Content',
  400: 'Bad Request',
  404: 'ICAP Service Not Found',
  405: 'Method Not Allowed For Service',
  408: 'Request Timeout',
  500: 'Server Error',
  501: 'Method Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Overloaded',
  505: 'ICAP Version Not Supported',
};

/** Reason phrases of RFC 3507 §4.3.3. */
export function icapReason(status: number): string {
  return REASONS[status] ?? 'Unknown';
}
