/** The messages and events of the HTTP/1.1 parser (heads keep field order and case as received). */
import type { ProtocolError } from '../../errors.js';
import type { RawHeaders } from './headers.js';

export interface RequestHead {
  method: string;
  /** The request-target exactly as sent (origin, absolute, authority or asterisk form). */
  target: string;
  /** '1.0' or '1.1'. */
  version: string;
  headers: RawHeaders;
}

export interface ResponseHead {
  version: string;
  status: number;
  reason: string;
  headers: RawHeaders;
}

/** How the body of the message just announced is delimited. */
export type BodyFraming =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** Response body delimited by the connection's end (RFC 9112 §6.3 item 8). */
  | { kind: 'close' };

export type HttpEvent =
  | { type: 'request-head'; head: RequestHead; framing: BodyFraming }
  | { type: 'response-head'; head: ResponseHead; framing: BodyFraming; requestMethod: string }
  /** Body bytes with transfer coding removed (chunk framing stripped). */
  | { type: 'body'; data: Buffer }
  | { type: 'trailers'; headers: RawHeaders }
  | { type: 'message-end' }
  | { type: 'error'; error: ProtocolError };
