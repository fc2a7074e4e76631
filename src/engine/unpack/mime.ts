/**
 * MIME messages and mbox files (RFC 5322, RFC 2045/2046, mbox as in RFC 4155), with uuencoded
 * blocks inside text bodies.
 *
 * Why not @zone-eu/mailsplit here: it is a push-style Transform that emits every node of the message
 * in one pass, while the Entry contract hands out one entry at a time, each streamed when (and only
 * if) the scanner opens it. Bridging the two would mean buffering decoded parts or pausing the whole
 * split across entries. The object is already spooled with random access, so this unpacker works
 * in two passes that keep memory bounded whatever the message size: the first records where each
 * leaf body lies (offsets only, a few header lines at a time), the second streams one body through
 * its transfer decoder when that entry is opened. The rewriting path (SMTP strip) keeps mailsplit.
 *
 * Limits: nested multiparts deeper than MAX_NESTING are treated as one opaque leaf (RFC 2046 sets no
 * limit; 10,000-deep nesting is a known parser bomb); header blocks past MAX_HEADER_BYTES are
 * skipped, not stored; an unterminated multipart ends at the end of the object.
 */
import libmime from 'libmime';
import type { ObjectSource } from '../source.js';
import { Base64Decoder, decodeBase64Whole, QuotedPrintableDecoder, type StreamDecoder } from './decoders.js';
import { checkAbort, EntryCounter, limitOutput } from './limits.js';
import { type Line, LineSplitter, type UuBlock, UuScanner } from './textlines.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';
import { decodeUuBlock } from './uuencode.js';

/** Header bytes kept per entity; more are skipped, so a header bomb cannot grow memory. */
const MAX_HEADER_BYTES = 64 * 1024;
/** Multipart nesting kept track of; deeper multiparts become opaque leaves. */
export const MAX_NESTING = 64;

const HEADER_NAMES =
  /^(from|to|cc|subject|date|received|return-path|message-id|mime-version|content-type|content-transfer-encoding|content-disposition|delivered-to|reply-to|sender|x-[a-z0-9-]+):/i;

type Encoding = 'base64' | 'quoted-printable' | 'identity';

interface Part {
  name: string;
  start: number;
  end: number;
  encoding: Encoding;
  /** Set for a uuencoded block found in a text body. */
  uu?: UuBlock;
}

/** Header lines at the start (after an mbox `From ` line), at least two of them well-known names. */
export function looksLikeMail(head: Buffer): boolean {
  // Cheap refusal first (every attachment and binary is asked): the first line must be a header
  // field, an mbox `From ` line or a folded continuation.
  const firstEnd = head.indexOf(10);
  const first = head.toString('latin1', 0, Math.min(firstEnd < 0 ? head.length : firstEnd, 4096));
  if (!/^(From |[ \t]|[\x21-\x39\x3b-\x7e]+:)/.test(first)) return false;
  const lns = head.subarray(0, 4096).toString('latin1').split(/\r?\n/);
  let i = lns[0]?.startsWith('From ') ? 1 : 0;
  let known = 0;
  for (; i < lns.length && i < 40; i++) {
    const l = lns[i]!;
    if (l === '') break;
    if (/^[ \t]/.test(l)) continue;
    if (!/^[\x21-\x39\x3b-\x7e]+:/.test(l)) return false;
    if (HEADER_NAMES.test(l)) known++;
  }
  return known >= 2;
}

/**
 * A header parameter, decoded: RFC 2231 continuations and charsets (`name*0*=utf-8''…; name*1*=…`)
 * through libmime, then RFC 2047 encoded words (`=?utf-8?B?…?=`), which many mailers still put in
 * filenames although RFC 2047 §5 forbids it.
 */
export function headerParam(value: string, param: string): string | undefined {
  let raw: string | undefined;
  try {
    const params = libmime.parseHeaderValue(value).params as Record<string, string>;
    raw = params[param.toLowerCase()];
  } catch {
    return undefined;
  }
  if (raw === undefined || raw === '') return undefined;
  try {
    return libmime.decodeWords(raw);
  } catch {
    return raw;
  }
}

class Entity {
  readonly headers: string[] = [];
  private bytes = 0;

  add(line: string): void {
    if (this.bytes >= MAX_HEADER_BYTES) return;
    this.bytes += line.length;
    if (/^[ \t]/.test(line) && this.headers.length)
      this.headers[this.headers.length - 1] += ` ${line.trim()}`;
    else this.headers.push(line);
  }

  field(name: string): string {
    const prefix = `${name}:`;
    for (const h of this.headers)
      if (h.toLowerCase().startsWith(prefix)) return h.slice(prefix.length).trim();
    return '';
  }
}

/** The name a mail reader would save the part under; control characters are dropped. */
function partName(e: Entity): string | undefined {
  const n =
    headerParam(e.field('content-disposition'), 'filename') ?? headerParam(e.field('content-type'), 'name');
  const clean = n?.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  return clean || undefined;
}

/** First pass: where every leaf body (and every uuencoded block in a text body) lies. */
class PartIndexer {
  readonly parts: Part[] = [];
  private readonly counter: EntryCounter;
  private boundaries: string[] = [];
  private entity: Entity | null = new Entity();
  private leaf: { name: string; start: number; encoding: Encoding } | null = null;
  private uu: UuScanner | null = null;
  private prev: Line | null = null;
  private mbox = false;

  constructor(ctx: UnpackContext) {
    this.counter = new EntryCounter('mime', ctx);
  }

  private push(p: Part): void {
    if (p.end <= p.start) return;
    this.counter.next();
    this.parts.push(p);
  }

  private closeLeaf(end: number): void {
    if (this.uu) {
      const b = this.uu.close(end);
      if (b) this.push({ name: b.name, start: b.start, end: b.end, encoding: 'identity', uu: b });
    }
    if (this.leaf) this.push({ ...this.leaf, end: Math.max(this.leaf.start, end) });
    this.leaf = null;
    this.uu = null;
  }

  /** Where the body before `line` ends: the line break before a delimiter belongs to it (RFC 2046 §5.1.1). */
  private endBefore(line: Line): number {
    return line.start - line.before;
  }

  /**
   * The first byte of the only lines that can matter next, or -1 for every line. Inside a base64 or
   * quoted-printable body (and a preamble or epilogue) outside mbox, only a boundary delimiter ("--")
   * changes anything; header lines, uuencode in text bodies and mbox `From ` lines need every line.
   */
  only(): number {
    return this.entity || this.uu || this.mbox ? -1 : 0x2d;
  }

  private boundaryAt(t: string): { index: number; closing: boolean } | null {
    if (!t.startsWith('--') || this.boundaries.length === 0) return null;
    for (let i = this.boundaries.length - 1; i >= 0; i--) {
      const b = this.boundaries[i]!;
      if (!t.startsWith(b, 2)) continue;
      const rest = t.slice(2 + b.length);
      // Transport padding (trailing white space) is allowed after a delimiter.
      if (/^[ \t]*$/.test(rest)) return { index: i, closing: false };
      if (/^--[ \t]*$/.test(rest)) return { index: i, closing: true };
    }
    return null;
  }

  private startLeafOrMultipart(e: Entity, bodyStart: number): void {
    const ctype = e.field('content-type');
    const boundary = /^multipart\//i.test(ctype) ? headerParam(ctype, 'boundary') : undefined;
    if (boundary && this.boundaries.length < MAX_NESTING) {
      this.boundaries.push(boundary);
      return; // the preamble up to the first delimiter is not a part
    }
    const cte = e.field('content-transfer-encoding').toLowerCase();
    const encoding: Encoding =
      cte === 'base64' ? 'base64' : cte === 'quoted-printable' ? 'quoted-printable' : 'identity';
    this.leaf = { name: partName(e) ?? `part-${this.parts.length + 1}`, start: bodyStart, encoding };
    if (encoding === 'identity') this.uu = new UuScanner();
  }

  line(l: Line, first: boolean): void {
    // Body lines (nearly all of a mail) are dismissed on their first byte, without decoding their text.
    // mbox (RFC 4155): a `From ` line at the start, and after a blank line, starts a message.
    if (l.first === 0x46 && (first || (this.mbox && this.prev?.length === 0)) && l.text.startsWith('From ')) {
      if (first) this.mbox = true;
      this.closeLeaf(this.endBefore(l));
      this.boundaries = [];
      this.entity = new Entity();
      this.prev = l;
      return;
    }
    const delimiter = l.first === 0x2d ? this.boundaryAt(l.text) : null;
    if (delimiter) {
      this.closeLeaf(this.endBefore(l));
      this.boundaries.length = delimiter.closing ? delimiter.index : delimiter.index + 1;
      this.entity = delimiter.closing ? null : new Entity();
    } else if (this.entity) {
      if (l.length === 0) {
        const e = this.entity;
        this.entity = null;
        this.startLeafOrMultipart(e, l.next);
      } else this.entity.add(l.text);
    } else if (this.uu) {
      const b = this.uu.line(l);
      if (b) this.push({ name: b.name, start: b.start, end: b.end, encoding: 'identity', uu: b });
    }
    this.prev = l;
  }

  end(size: number): Part[] {
    // A message that ends inside its headers has no body; an open leaf runs to the end.
    this.closeLeaf(size);
    return this.parts;
  }
}

async function indexParts(source: ObjectSource, ctx: UnpackContext): Promise<Part[]> {
  const ix = new PartIndexer(ctx);
  const split = new LineSplitter();
  let first = true;
  const take = (l: Line) => {
    ix.line(l, first);
    first = false;
  };
  for await (const chunk of source.stream()) {
    checkAbort(ctx);
    split.push(chunk);
    for (let l = split.next(ix.only()); l; l = split.next(ix.only())) take(l);
  }
  const last = split.end();
  if (last) take(last);
  return ix.end(source.size);
}

/** Encoded base64 bodies up to this size are read and decoded in one piece (see decodeBase64Whole). */
const WHOLE_BASE64_MAX = 1024 * 1024;

function decode(source: ObjectSource, p: Part, ctx: UnpackContext): AsyncIterable<Buffer> {
  if (p.uu) return decodeUuBlock(source, p.uu, ctx);
  if (p.encoding === 'base64' && p.end - p.start <= WHOLE_BASE64_MAX) {
    const whole = async function* () {
      const out = decodeBase64Whole(await source.read(p.start, p.end - p.start));
      if (out) {
        if (out.length) yield out;
      } else yield* streamDecode(source, p, new Base64Decoder());
    };
    return limitOutput('mime', whole(), ctx, Math.max(1, p.end - p.start));
  }
  const decoder: StreamDecoder | null =
    p.encoding === 'base64'
      ? new Base64Decoder()
      : p.encoding === 'quoted-printable'
        ? new QuotedPrintableDecoder()
        : null;
  return limitOutput('mime', streamDecode(source, p, decoder), ctx, Math.max(1, p.end - p.start));
}

async function* streamDecode(source: ObjectSource, p: Part, decoder: StreamDecoder | null) {
  for await (const chunk of source.stream(p.start, p.end)) {
    const out = decoder ? decoder.write(chunk) : chunk;
    if (out.length) yield out;
  }
  const last = decoder?.end();
  if (last?.length) yield last;
}

export const mimeUnpacker: Unpacker = {
  type: 'mime',
  detect: (head) => looksLikeMail(head),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    for (const p of await indexParts(source, ctx)) yield { name: p.name, open: () => decode(source, p, ctx) };
  },
};
