/**
 * Writing HTTP/1.1 message heads and chunked framing (RFC 9112 §3, §4, §7.1). Header pairs are
 * written in the order and case given; values were validated by the parser (or are ours).
 */
import type { RawHeaders } from './headers.js';
import type { RequestHead, ResponseHead } from './parser.js';

const STATUS_TEXT: Record<number, string> = {
  100: 'Continue',
  101: 'Switching Protocols',
  200: 'OK',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  417: 'Expectation Failed',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
  508: 'Loop Detected',
};

export function reasonPhrase(status: number): string {
  return STATUS_TEXT[status] ?? 'Unknown';
}

function fieldLines(headers: RawHeaders): string {
  let s = '';
  for (const [n, v] of headers) s += `${n}: ${v}\r\n`;
  return s;
}

export function serializeRequestHead(head: RequestHead): Buffer {
  return Buffer.from(
    `${head.method} ${head.target} HTTP/${head.version}\r\n${fieldLines(head.headers)}\r\n`,
    'latin1',
  );
}

export function serializeResponseHead(head: ResponseHead): Buffer {
  return Buffer.from(
    `HTTP/${head.version} ${head.status} ${head.reason}\r\n${fieldLines(head.headers)}\r\n`,
    'latin1',
  );
}

/** One chunk (size line, data, CRLF); an empty `data` would end the body, so it yields nothing. */
export function encodeChunk(data: Buffer): Buffer[] {
  if (data.length === 0) return [];
  return [Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'), data, Buffer.from('\r\n', 'latin1')];
}

/** The last chunk plus the trailer section (§7.1.2). */
export function encodeLastChunk(trailers: RawHeaders = []): Buffer {
  return Buffer.from(`0\r\n${fieldLines(trailers)}\r\n`, 'latin1');
}
