/**
 * Sans-IO HTTP/1.1 message parser (the h11 / llhttp model): bytes go in with push(), events come
 * out of next(). It never touches a socket, never throws on input, and never buffers more than one
 * message head (bounded by maxHeaderSize); body bytes are handed out as slices as they arrive.
 *
 * Framing follows RFC 9112 §6: Transfer-Encoding chunked wins over Content-Length, and a request
 * carrying both is refused outright (§6.1 allows it; it is the classic request-smuggling vector and
 * a gateway that scans bodies must agree with the origin about where one ends). Differing
 * Content-Length values are refused (§6.3 item 5). Responses to HEAD, 1xx, 204, 304 and a 2xx to
 * CONNECT have no body; a response with neither length nor chunked runs until the connection closes.
 */
import { ProtocolError } from '../../errors.js';
import type { RawHeaders } from './headers.js';
import type { BodyFraming, HttpEvent, RequestHead, ResponseHead } from './messages.js';
import {
  contentLength,
  FIELD_VALUE,
  parseVersion,
  printable,
  statusFor,
  TARGET,
  TOKEN,
  transferCodings,
  validChunkExt,
} from './syntax.js';

export type Role = 'request' | 'response';

export type { BodyFraming, HttpEvent, RequestHead, ResponseHead } from './messages.js';

export interface ParserOptions {
  /** Bytes of start line + header section (and of a trailer section). Default 64 KiB. */
  maxHeaderSize?: number;
  /** Longest request line / status line. Default 16 KiB (request: 414 above it). */
  maxStartLineLength?: number;
  /** Most header fields in one section. Default 256. */
  maxHeaders?: number;
  /** Longest chunk-size line including extensions. Default 4 KiB. */
  maxChunkLineLength?: number;
}

type State =
  | 'head'
  | 'length'
  | 'chunk-size'
  | 'chunk-data'
  | 'chunk-data-crlf'
  | 'trailers'
  | 'close-body'
  /** After a CONNECT request, a 101, or a 2xx to CONNECT: the bytes that follow are not HTTP. */
  | 'tunnel'
  | 'eof'
  | 'error';

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');

export class HttpParser {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private state: State = 'head';
  private ended = false;
  /** Where the search for the end of the head resumes, so byte-at-a-time input stays linear. */
  private scanFrom = 0;
  private remaining = 0;
  private readonly methods: string[] = [];
  private readonly maxHeaderSize: number;
  private readonly maxStartLine: number;
  private readonly maxHeaders: number;
  private readonly maxChunkLine: number;
  /** After the current message: the bytes that follow are a tunnel, not HTTP. */
  private tunnelAfter = false;

  constructor(
    readonly role: Role,
    options: ParserOptions = {},
  ) {
    this.maxHeaderSize = options.maxHeaderSize ?? 64 * 1024;
    this.maxStartLine = options.maxStartLineLength ?? 16 * 1024;
    this.maxHeaders = options.maxHeaders ?? 256;
    this.maxChunkLine = options.maxChunkLineLength ?? 4096;
  }

  /** Response parsers must be told each request's method, in order, to frame the matching response. */
  expectResponse(method: string): void {
    this.methods.push(method.toUpperCase());
  }

  push(data: Buffer): void {
    if (this.ended || data.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.buf = data;
      this.pos = 0;
      this.scanFrom = 0;
    } else {
      const rest = this.buf.subarray(this.pos);
      this.scanFrom = Math.max(0, this.scanFrom - this.pos);
      this.buf = Buffer.concat([rest, data]);
      this.pos = 0;
    }
  }

  /** The peer closed its sending side. */
  pushEnd(): void {
    this.ended = true;
  }

  /** True once the parser will produce no more events (clean end, error, or tunnel). */
  get done(): boolean {
    return this.state === 'eof' || this.state === 'error' || this.state === 'tunnel';
  }

  /** True between messages (nothing of the next message seen yet). */
  get idle(): boolean {
    return this.state === 'head' && this.pos >= this.buf.length;
  }

  get inTunnel(): boolean {
    return this.state === 'tunnel';
  }

  /** Takes the bytes received but not yet parsed (after a tunnel starts: the first tunnel bytes). */
  takeBuffered(): Buffer {
    const rest = this.buf.subarray(this.pos);
    this.buf = Buffer.alloc(0);
    this.pos = 0;
    this.scanFrom = 0;
    return rest;
  }

  /** Leaves the tunnel state (e.g. the origin refused an Upgrade) and parses the next message. */
  resume(): void {
    if (this.state === 'tunnel') this.state = 'head';
  }

  /** Pushes `data` (and the end, when `end`) and returns every event now available. */
  feed(data: Buffer, end = false): HttpEvent[] {
    this.push(data);
    if (end) this.pushEnd();
    const out: HttpEvent[] = [];
    for (let e = this.next(); e; e = this.next()) out.push(e);
    return out;
  }

  /** The next event, or null when more input is needed (or nothing more will come). */
  next(): HttpEvent | null {
    switch (this.state) {
      case 'head':
        return this.parseHead();
      case 'length':
        return this.readLength();
      case 'chunk-size':
        return this.readChunkSize();
      case 'chunk-data':
        return this.readChunkData();
      case 'chunk-data-crlf':
        return this.readChunkCrlf();
      case 'trailers':
        return this.readTrailers();
      case 'close-body':
        return this.readUntilClose();
      default:
        return null;
    }
  }

  private fail(code: string, message: string): HttpEvent {
    this.state = 'error';
    const status = this.role === 'request' ? statusFor(code) : 502;
    return { type: 'error', error: new ProtocolError(code, message, status) };
  }

  private available(): number {
    return this.buf.length - this.pos;
  }

  private parseHead(): HttpEvent | null {
    // RFC 9112 §2.2: ignore empty lines before the request-line (robustness after a body's extra CRLF).
    while (this.available() >= 2 && this.buf[this.pos] === 0x0d && this.buf[this.pos + 1] === 0x0a) {
      this.pos += 2;
      this.scanFrom = Math.max(this.scanFrom, this.pos);
    }
    const start = this.pos;
    if (this.available() === 0) {
      if (this.ended) this.state = 'eof';
      return null;
    }
    const from = Math.max(start, this.scanFrom - 3);
    const end = this.buf.indexOf(CRLFCRLF, from);
    if (end < 0) {
      this.scanFrom = this.buf.length;
      const firstLineEnd = this.buf.indexOf(CRLF, start);
      // Refuse binary garbage (a TLS ClientHello, a P2P handshake) at once instead of waiting for
      // a head that will never come: a start line holds no control characters.
      const lineEnd = firstLineEnd < 0 ? this.buf.length : firstLineEnd;
      for (let i = from; i < lineEnd; i++) {
        const b = this.buf[i]!;
        if ((b < 0x20 && b !== 0x09) || b === 0x7f) {
          if (b === 0x0d && i === this.buf.length - 1) break;
          return this.fail(
            this.role === 'request' ? 'ERR_HTTP_BAD_REQUEST_LINE' : 'ERR_HTTP_BAD_STATUS_LINE',
            'control character in start line',
          );
        }
      }
      if (firstLineEnd < 0 && this.available() > this.maxStartLine) {
        return this.fail(
          this.role === 'request' ? 'ERR_HTTP_URI_TOO_LONG' : 'ERR_HTTP_HEADER_TOO_LARGE',
          'start line too long',
        );
      }
      if (this.available() > this.maxHeaderSize)
        return this.fail('ERR_HTTP_HEADER_TOO_LARGE', 'header section too large');
      if (this.ended) return this.fail('ERR_HTTP_INCOMPLETE', 'connection closed inside a message head');
      return null;
    }
    if (end + 4 - start > this.maxHeaderSize + 4)
      return this.fail('ERR_HTTP_HEADER_TOO_LARGE', 'header section too large');
    const text = this.buf.toString('latin1', start, end);
    this.pos = end + 4;
    this.scanFrom = this.pos;
    const lines = text.split('\r\n');
    const startLine = lines[0]!;
    if (startLine.length > this.maxStartLine) {
      return this.fail(
        this.role === 'request' ? 'ERR_HTTP_URI_TOO_LONG' : 'ERR_HTTP_HEADER_TOO_LARGE',
        'start line too long',
      );
    }
    const fields = this.parseFields(lines, 1);
    if (!Array.isArray(fields)) return fields;
    return this.role === 'request'
      ? this.requestHead(startLine, fields)
      : this.responseHead(startLine, fields);
  }

  /** Field lines (RFC 9112 §5); returns the error event on malformed input. */
  private parseFields(lines: string[], first: number): RawHeaders | HttpEvent {
    const headers: RawHeaders = [];
    for (let i = first; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.includes('\r') || line.includes('\n'))
        return this.fail('ERR_HTTP_BARE_CRLF', 'bare CR or LF in header section');
      if (line[0] === ' ' || line[0] === '\t') {
        // obs-fold (§5.2): a server must refuse it; a client (we parse responses) replaces it with SP.
        if (this.role === 'request' || headers.length === 0)
          return this.fail('ERR_HTTP_OBS_FOLD', 'obsolete line folding');
        const last = headers[headers.length - 1]!;
        const cont = line.trim();
        if (!FIELD_VALUE.test(cont))
          return this.fail('ERR_HTTP_BAD_HEADER', 'invalid character in header value');
        last[1] = last[1] ? `${last[1]} ${cont}` : cont;
        continue;
      }
      const colon = line.indexOf(':');
      if (colon <= 0) return this.fail('ERR_HTTP_BAD_HEADER', 'header line without a field name');
      const name = line.slice(0, colon);
      // §5.1: no whitespace between field name and colon; names are tokens.
      if (!TOKEN.test(name))
        return this.fail('ERR_HTTP_BAD_HEADER', `invalid header name "${printable(name)}"`);
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
      if (!FIELD_VALUE.test(value))
        return this.fail('ERR_HTTP_BAD_HEADER', `invalid character in value of ${name}`);
      headers.push([name, value]);
      if (headers.length > this.maxHeaders)
        return this.fail('ERR_HTTP_HEADER_TOO_LARGE', 'too many header fields');
    }
    return headers;
  }

  private requestHead(line: string, headers: RawHeaders): HttpEvent {
    const parts = line.split(' ');
    if (parts.length !== 3) return this.fail('ERR_HTTP_BAD_REQUEST_LINE', 'malformed request line');
    const [method, target, proto] = parts as [string, string, string];
    if (!TOKEN.test(method)) return this.fail('ERR_HTTP_BAD_REQUEST_LINE', 'invalid method');
    if (!TARGET.test(target)) return this.fail('ERR_HTTP_BAD_REQUEST_LINE', 'invalid request-target');
    const version = parseVersion(proto);
    if (!version) return this.fail('ERR_HTTP_BAD_REQUEST_LINE', 'invalid HTTP version');
    if (version !== '1.0' && version !== '1.1')
      return this.fail('ERR_HTTP_VERSION', `HTTP/${version} not supported`);
    const head: RequestHead = { method, target, version, headers };
    const framing = this.requestFraming(head);
    if ('type' in framing) return framing;
    this.enterBody(framing, method === 'CONNECT');
    return { type: 'request-head', head, framing };
  }

  private responseHead(line: string, headers: RawHeaders): HttpEvent {
    const m = /^HTTP\/(\d)\.(\d) (\d{3})(?: (.*))?$/.exec(line);
    if (!m) return this.fail('ERR_HTTP_BAD_STATUS_LINE', 'malformed status line');
    const version = `${m[1]}.${m[2]}`;
    if (m[1] !== '1') return this.fail('ERR_HTTP_VERSION', `HTTP/${version} not supported`);
    const status = Number(m[3]);
    const reason = m[4] ?? '';
    if (status < 100 || !/^[\t\x20-\x7e\x80-\xff]*$/.test(reason))
      return this.fail('ERR_HTTP_BAD_STATUS_LINE', 'malformed status line');
    const method = this.methods[0] ?? 'GET';
    const head: ResponseHead = { version, status, reason, headers };
    const informational = status < 200 && status !== 101;
    // A 1xx other than 101 is followed by the real response to the same request.
    if (!informational) this.methods.shift();
    const framing = this.responseFraming(head, method);
    if ('type' in framing) return framing;
    const tunnel = status === 101 || (method === 'CONNECT' && status >= 200 && status < 300);
    this.enterBody(framing, tunnel);
    return { type: 'response-head', head, framing, requestMethod: method };
  }

  private requestFraming(head: RequestHead): BodyFraming | HttpEvent {
    const te = transferCodings(head.headers);
    const cl = contentLength(head.headers);
    if (cl === 'invalid')
      return this.fail('ERR_HTTP_BAD_CONTENT_LENGTH', 'invalid or conflicting Content-Length');
    if (head.method === 'CONNECT') return { kind: 'none' }; // RFC 9110 §9.3.6: CONNECT has no content
    if (te) {
      if (cl !== null) return this.fail('ERR_HTTP_SMUGGLING', 'both Transfer-Encoding and Content-Length');
      if (head.version === '1.0')
        return this.fail('ERR_HTTP_SMUGGLING', 'Transfer-Encoding in an HTTP/1.0 request');
      if (te.length !== 1 || te[0] !== 'chunked') {
        return this.fail('ERR_HTTP_TRANSFER_CODING', `unsupported transfer coding "${te.join(', ')}"`);
      }
      return { kind: 'chunked' };
    }
    if (cl !== null && cl > 0) return { kind: 'length', length: cl };
    return { kind: 'none' };
  }

  private responseFraming(head: ResponseHead, method: string): BodyFraming | HttpEvent {
    const s = head.status;
    if (method === 'HEAD' || s < 200 || s === 204 || s === 304) return { kind: 'none' };
    if (method === 'CONNECT' && s < 300) return { kind: 'none' };
    const te = transferCodings(head.headers);
    if (te) {
      // §6.3 item 4: chunked last → chunked; otherwise the body runs to the close.
      if (te[te.length - 1] === 'chunked' && head.version !== '1.0') {
        if (te.filter((c) => c === 'chunked').length > 1)
          return this.fail('ERR_HTTP_TRANSFER_CODING', 'chunked applied twice');
        return { kind: 'chunked' };
      }
      return { kind: 'close' };
    }
    const cl = contentLength(head.headers);
    if (cl === 'invalid')
      return this.fail('ERR_HTTP_BAD_CONTENT_LENGTH', 'invalid or conflicting Content-Length');
    if (cl !== null) return cl > 0 ? { kind: 'length', length: cl } : { kind: 'none' };
    return { kind: 'close' };
  }

  private enterBody(framing: BodyFraming, tunnelAfter: boolean): void {
    this.tunnelAfter = tunnelAfter;
    switch (framing.kind) {
      case 'none':
        this.state = 'length';
        this.remaining = 0;
        break;
      case 'length':
        this.state = 'length';
        this.remaining = framing.length;
        break;
      case 'chunked':
        this.state = 'chunk-size';
        break;
      case 'close':
        this.state = 'close-body';
        break;
    }
  }

  private endMessage(): HttpEvent {
    this.state = this.tunnelAfter ? 'tunnel' : 'head';
    this.tunnelAfter = false;
    return { type: 'message-end' };
  }

  private readLength(): HttpEvent | null {
    if (this.remaining === 0) return this.endMessage();
    const n = Math.min(this.remaining, this.available());
    if (n === 0) {
      if (this.ended) return this.fail('ERR_HTTP_TRUNCATED', 'connection closed inside a body');
      return null;
    }
    const data = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.remaining -= n;
    return { type: 'body', data };
  }

  private readUntilClose(): HttpEvent | null {
    if (this.available() > 0) {
      const data = this.buf.subarray(this.pos);
      this.pos = this.buf.length;
      return { type: 'body', data };
    }
    if (this.ended) {
      const e = this.endMessage();
      this.state = 'eof';
      return e;
    }
    return null;
  }

  /** chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1, §7.1.1). */
  private readChunkSize(): HttpEvent | null {
    const eol = this.buf.indexOf(CRLF, this.pos);
    if (eol < 0) {
      if (this.available() > this.maxChunkLine)
        return this.fail('ERR_HTTP_BAD_CHUNK', 'chunk-size line too long');
      if (this.ended) return this.fail('ERR_HTTP_TRUNCATED', 'connection closed inside a chunked body');
      return null;
    }
    if (eol - this.pos > this.maxChunkLine)
      return this.fail('ERR_HTTP_BAD_CHUNK', 'chunk-size line too long');
    const line = this.buf.toString('latin1', this.pos, eol);
    const m = /^([0-9A-Fa-f]+)(.*)$/.exec(line);
    if (!m) return this.fail('ERR_HTTP_BAD_CHUNK', 'invalid chunk size');
    if (m[2] && !validChunkExt(m[2])) return this.fail('ERR_HTTP_BAD_CHUNK', 'invalid chunk extension');
    const digits = m[1]!.replace(/^0+(?=.)/, '');
    if (digits.length > 12) return this.fail('ERR_HTTP_BAD_CHUNK', 'chunk size too large');
    this.pos = eol + 2;
    this.remaining = Number.parseInt(digits, 16);
    if (this.remaining === 0) {
      this.state = 'trailers';
      return this.readTrailers();
    }
    this.state = 'chunk-data';
    return this.readChunkData();
  }

  private readChunkData(): HttpEvent | null {
    const n = Math.min(this.remaining, this.available());
    if (n === 0) {
      if (this.ended) return this.fail('ERR_HTTP_TRUNCATED', 'connection closed inside a chunk');
      return null;
    }
    const data = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.remaining -= n;
    if (this.remaining === 0) this.state = 'chunk-data-crlf';
    return { type: 'body', data };
  }

  private readChunkCrlf(): HttpEvent | null {
    if (this.available() < 2) {
      if (this.available() === 1 && this.buf[this.pos] !== 0x0d)
        return this.fail('ERR_HTTP_BAD_CHUNK', 'chunk data not followed by CRLF');
      if (this.ended) return this.fail('ERR_HTTP_TRUNCATED', 'connection closed inside a chunked body');
      return null;
    }
    if (this.buf[this.pos] !== 0x0d || this.buf[this.pos + 1] !== 0x0a)
      return this.fail('ERR_HTTP_BAD_CHUNK', 'chunk data not followed by CRLF');
    this.pos += 2;
    this.state = 'chunk-size';
    return this.readChunkSize();
  }

  /** trailer-section CRLF after the last chunk (§7.1.2). */
  private readTrailers(): HttpEvent | null {
    if (this.available() >= 2 && this.buf[this.pos] === 0x0d && this.buf[this.pos + 1] === 0x0a) {
      this.pos += 2;
      return this.endMessage();
    }
    const end = this.buf.indexOf(CRLFCRLF, this.pos);
    if (end < 0) {
      if (this.available() > this.maxHeaderSize)
        return this.fail('ERR_HTTP_HEADER_TOO_LARGE', 'trailer section too large');
      if (this.ended) return this.fail('ERR_HTTP_TRUNCATED', 'connection closed inside the trailer section');
      return null;
    }
    if (end - this.pos > this.maxHeaderSize)
      return this.fail('ERR_HTTP_HEADER_TOO_LARGE', 'trailer section too large');
    const lines = this.buf.toString('latin1', this.pos, end).split('\r\n');
    const fields = this.parseFields(lines, 0);
    if (!Array.isArray(fields)) return fields;
    // The empty line is consumed by the next call, which then ends the message.
    this.pos = end + 2;
    return { type: 'trailers', headers: fields };
  }
}
