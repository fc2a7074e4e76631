/**
 * Sans-IO ICAP/1.0 request parser (RFC 3507): bytes go in with push(), events come out of next().
 * It never touches a socket, never throws on input, and never holds more than one ICAP head plus
 * its encapsulated HTTP heads (each bounded by maxHeaderSize); body bytes are handed out as slices
 * of the chunked ICAP body as they arrive.
 *
 * A message is: the ICAP request line and header fields, then the encapsulated HTTP heads laid out
 * by the Encapsulated offsets (§4.4.1), then the body in HTTP/1.1 chunked coding, whose last chunk
 * may say "0; ieof" (§4.5: the preview held the whole body). A preview that ends without ieof
 * pauses the parser until the session answers: continueBody() after "100 Continue", abandonBody()
 * after a final response (the client then sends nothing more of that body, §4.5).
 */
import { ProtocolError } from '../../errors.js';
import type { RawHeaders } from '../http/headers.js';
import { getAll, hasToken, listTokens } from '../http/headers.js';
import { HttpParser } from '../http/parser.js';
import { FIELD_VALUE, printable, TOKEN } from '../http/syntax.js';
import { ByteQueue } from './bytes.js';
import { ChunkDecoder } from './chunked.js';
import { type EncapsulatedResult, parseEncapsulated } from './encapsulated.js';
import type {
  EncapsulatedRequest,
  EncapsulatedResponse,
  IcapEvent,
  IcapMethod,
  IcapRequest,
} from './messages.js';

export interface IcapParserOptions {
  /** Bytes of the ICAP head; also the cap on the encapsulated HTTP heads together. Default 64 KiB. */
  maxHeaderSize?: number;
  /** Most header fields in one section. Default 256. */
  maxHeaders?: number;
  /** Longest chunk-size line including extensions. Default 4 KiB. */
  maxChunkLineLength?: number;
}

type State = 'head' | 'sections' | 'bodyless-end' | 'body' | 'preview-wait' | 'eof' | 'error';

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const METHODS: readonly string[] = ['OPTIONS', 'REQMOD', 'RESPMOD'];
const URI = /^(?:icaps?:\/\/[^/?#\s]+)?(\/[^?#\s]*)?(?:\?[^#\s]*)?$/i;

type PendingHead = { request: Omit<IcapRequest, 'reqHdr' | 'resHdr'> } & Extract<
  EncapsulatedResult,
  { entities: unknown }
>;

export class IcapParser {
  private readonly q = new ByteQueue();
  private readonly chunks: ChunkDecoder;
  private state: State = 'head';
  private ended = false;
  /** Where the search for the end of the head resumes, so byte-at-a-time input stays linear. */
  private scanFrom = 0;
  private pending: PendingHead | null = null;
  /** The body being read is a preview (its zero chunk is not the end unless it says ieof). */
  private inPreview = false;
  private readonly maxHeaderSize: number;
  private readonly maxHeaders: number;

  constructor(options: IcapParserOptions = {}) {
    this.maxHeaderSize = options.maxHeaderSize ?? 64 * 1024;
    this.maxHeaders = options.maxHeaders ?? 256;
    this.chunks = new ChunkDecoder(this.q, options.maxChunkLineLength ?? 4096, this.maxHeaderSize);
  }

  push(data: Buffer): void {
    if (!this.ended) this.q.append(data);
  }

  /** The peer closed its sending side. */
  pushEnd(): void {
    this.ended = true;
  }

  /** Pushes `data` (and the end, when `end`) and returns every event now available. */
  feed(data: Buffer, end = false): IcapEvent[] {
    this.push(data);
    if (end) this.pushEnd();
    const out: IcapEvent[] = [];
    for (let e = this.next(); e; e = this.next()) out.push(e);
    return out;
  }

  /** True once the parser will produce no more events (clean end or error). */
  get done(): boolean {
    return this.state === 'eof' || this.state === 'error';
  }

  /** True between messages with nothing of the next one received. */
  get idle(): boolean {
    return this.state === 'head' && this.q.length === 0;
  }

  /** True while a preview without ieof waits for the session's decision. */
  get awaitingPreviewDecision(): boolean {
    return this.state === 'preview-wait';
  }

  /** After "100 Continue": the rest of the body follows as chunks, up to a plain last chunk. */
  continueBody(): void {
    if (this.state !== 'preview-wait') return;
    this.inPreview = false;
    this.chunks.reset();
    this.state = 'body';
  }

  /** After a final response to a preview: the client sends no more of this body (§4.5). */
  abandonBody(): void {
    if (this.state !== 'preview-wait') return;
    this.inPreview = false;
    this.state = 'head';
  }

  /** The next event, or null when more input (or a preview decision) is needed. */
  next(): IcapEvent | null {
    switch (this.state) {
      case 'head':
        return this.parseHead();
      case 'sections':
        return this.parseSections();
      case 'bodyless-end':
        this.state = 'head';
        return { type: 'end', ieof: false };
      case 'body':
        return this.readBody();
      default:
        return null;
    }
  }

  private fail(code: string, message: string, status = 400): IcapEvent {
    this.state = 'error';
    this.pending = null;
    return { type: 'error', error: new ProtocolError(code, message, status) };
  }

  private truncated(where: string): IcapEvent | null {
    return this.ended ? this.fail('ERR_ICAP_TRUNCATED', `connection closed inside ${where}`) : null;
  }

  private parseHead(): IcapEvent | null {
    // Tolerate empty lines between messages (a client's stray CRLF after a body).
    while (this.q.length >= 2 && this.q.byteAt(0) === 0x0d && this.q.byteAt(1) === 0x0a) {
      this.q.skip(2);
      this.scanFrom = Math.max(0, this.scanFrom - 2);
    }
    if (this.q.length === 0) {
      if (this.ended) this.state = 'eof';
      return null;
    }
    const from = Math.max(0, this.scanFrom - 3);
    const end = this.q.find(CRLFCRLF, from);
    if (end < 0) {
      // Binary garbage (TLS, another protocol) is refused at once rather than waited on.
      const lineEnd = this.q.find(CRLF);
      const stop = lineEnd < 0 ? this.q.length : lineEnd;
      for (let i = from; i < stop; i++) {
        const b = this.q.byteAt(i)!;
        if ((b < 0x20 && b !== 0x09 && !(b === 0x0d && i === this.q.length - 1)) || b === 0x7f)
          return this.fail('ERR_ICAP_BAD_REQUEST_LINE', 'control character in the request line');
      }
      this.scanFrom = this.q.length;
      if (this.q.length > this.maxHeaderSize)
        return this.fail('ERR_ICAP_HEADER_TOO_LARGE', 'ICAP head too large');
      return this.truncated('an ICAP head');
    }
    if (end > this.maxHeaderSize) return this.fail('ERR_ICAP_HEADER_TOO_LARGE', 'ICAP head too large');
    const lines = this.q.text(0, end).split('\r\n');
    this.q.skip(end + 4);
    this.scanFrom = 0;
    return this.requestHead(lines);
  }

  private requestHead(lines: string[]): IcapEvent | null {
    const parts = lines[0]!.split(' ');
    if (parts.length !== 3) return this.fail('ERR_ICAP_BAD_REQUEST_LINE', 'malformed request line');
    const [method, uri, proto] = parts as [string, string, string];
    const version = /^ICAP\/(\d)\.(\d)$/.exec(proto);
    if (!version || !TOKEN.test(method))
      return this.fail('ERR_ICAP_BAD_REQUEST_LINE', 'malformed request line');
    if (version[1] !== '1' || version[2] !== '0')
      return this.fail('ERR_ICAP_VERSION', `ICAP/${version[1]}.${version[2]} not supported`, 505);
    const uriMatch = URI.exec(uri);
    if (!uriMatch || !(uri[0] === '/' || /^icaps?:\/\//i.test(uri)))
      return this.fail('ERR_ICAP_BAD_URI', `invalid ICAP URI "${printable(uri)}"`);
    const headers = this.parseFields(lines, 1);
    if (!Array.isArray(headers)) return headers;
    // An unknown method's framing is unknown, so nothing after it can be parsed (501, then close).
    if (!METHODS.includes(method))
      return this.fail('ERR_ICAP_METHOD', `method ${printable(method)} not implemented`, 501);
    const icapMethod = method as IcapMethod;
    const encapsulated = getAll(headers, 'encapsulated');
    if (encapsulated.length > 1)
      return this.fail('ERR_ICAP_ENCAPSULATED', 'more than one Encapsulated header');
    let layout: Extract<EncapsulatedResult, { entities: unknown }>;
    if (encapsulated.length === 0) {
      if (icapMethod !== 'OPTIONS')
        return this.fail('ERR_ICAP_ENCAPSULATED', `${icapMethod} without an Encapsulated header`);
      layout = { entities: [], heads: [], body: null, headBytes: 0 };
    } else {
      const parsed = parseEncapsulated(encapsulated[0]!, icapMethod);
      if ('error' in parsed) return this.fail('ERR_ICAP_ENCAPSULATED', parsed.error);
      layout = parsed;
    }
    if (layout.headBytes > this.maxHeaderSize)
      return this.fail('ERR_ICAP_HEADER_TOO_LARGE', 'encapsulated HTTP heads too large');
    let preview: number | null = null;
    const previewValues = getAll(headers, 'preview');
    if (previewValues.length > 0) {
      if (previewValues.length > 1 || !/^\d{1,9}$/.test(previewValues[0]!.trim()))
        return this.fail('ERR_ICAP_PREVIEW', 'invalid Preview header');
      if (layout.body) preview = Number(previewValues[0]!.trim());
    }
    const request: PendingHead['request'] = {
      method: icapMethod,
      uri,
      service: (uriMatch[1] ?? '').replace(/^\/+|\/+$/g, ''),
      headers,
      encapsulated: layout.entities,
      body: layout.body,
      preview,
      allow204: listTokens(headers, 'allow').includes('204'),
      close: hasToken(headers, 'connection', 'close'),
    };
    this.pending = { request, ...layout };
    this.state = 'sections';
    return this.parseSections();
  }

  /** Field lines (RFC 9112 §5 grammar, which ICAP shares); the error event on malformed input. */
  private parseFields(lines: string[], first: number): RawHeaders | IcapEvent {
    const headers: RawHeaders = [];
    for (let i = first; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.includes('\r') || line.includes('\n'))
        return this.fail('ERR_ICAP_BAD_HEADER', 'bare CR or LF in the ICAP head');
      if (line[0] === ' ' || line[0] === '\t')
        return this.fail('ERR_ICAP_BAD_HEADER', 'obsolete line folding');
      const colon = line.indexOf(':');
      const name = colon > 0 ? line.slice(0, colon) : '';
      if (!TOKEN.test(name))
        return this.fail('ERR_ICAP_BAD_HEADER', `invalid header line "${printable(line)}"`);
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
      if (!FIELD_VALUE.test(value)) return this.fail('ERR_ICAP_BAD_HEADER', `invalid character in ${name}`);
      headers.push([name, value]);
      if (headers.length > this.maxHeaders) return this.fail('ERR_ICAP_BAD_HEADER', 'too many header fields');
    }
    return headers;
  }

  /** The encapsulated HTTP heads, once all their bytes (the body entity's offset) are here. */
  private parseSections(): IcapEvent | null {
    const p = this.pending!;
    if (this.q.length < p.headBytes) return this.truncated('the encapsulated HTTP heads');
    let reqHdr: EncapsulatedRequest | null = null;
    let resHdr: EncapsulatedResponse | null = null;
    for (const h of p.heads) {
      const raw = this.q.view(h.start, h.end);
      // Offsets are exact: each section is one HTTP head ending at its own empty line.
      if (raw.indexOf(CRLFCRLF) !== raw.length - 4)
        return this.fail('ERR_ICAP_ENCAPSULATED', `${h.name} does not end where the next entity starts`);
      const first = httpHead(h.name === 'req-hdr' ? 'request' : 'response', raw, this.maxHeaderSize);
      if (typeof first === 'string') return this.fail('ERR_ICAP_ENCAPSULATED', `${h.name}: ${first}`);
      if (first.type === 'request-head') reqHdr = { raw, head: first.head };
      else resHdr = { raw, head: first.head };
    }
    this.q.skip(p.headBytes);
    this.pending = null;
    this.inPreview = p.request.preview !== null;
    this.chunks.reset();
    this.state = p.body ? 'body' : 'bodyless-end';
    return { type: 'request', request: { ...p.request, reqHdr, resHdr } };
  }

  /** Body bytes as the chunks arrive; the last chunk ends the body, or only the preview (§4.5). */
  private readBody(): IcapEvent | null {
    const step = this.chunks.step();
    switch (step.kind) {
      case 'data':
        return { type: 'body', data: step.data };
      case 'need':
        return this.truncated('a chunked body');
      case 'bad':
        return this.fail(step.code, step.message);
    }
    if (this.inPreview && !step.ieof) {
      this.state = 'preview-wait';
      return { type: 'preview-end' };
    }
    this.inPreview = false;
    this.state = 'head';
    return { type: 'end', ieof: step.ieof };
  }
}

/** The one HTTP head in `raw`, parsed by the HTTP gateway's parser; a message when it is not one. */
function httpHead(
  role: 'request' | 'response',
  raw: Buffer,
  maxHeaderSize: number,
):
  | { type: 'request-head'; head: EncapsulatedRequest['head'] }
  | { type: 'response-head'; head: EncapsulatedResponse['head'] }
  | string {
  const parser = new HttpParser(role, { maxHeaderSize });
  parser.push(raw);
  const ev = parser.next();
  if (ev?.type === 'request-head' || ev?.type === 'response-head') return ev;
  if (ev?.type === 'error') return ev.error.message;
  return 'not an HTTP head';
}
