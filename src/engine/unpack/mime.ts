/**
 * MIME messages and mbox (RFC 5322, RFC 2045/2046), with uuencoded blocks inside text bodies.
 * Two passes over the random-access source keep memory bounded whatever the message size: the
 * first records where each leaf part's body lies (offsets only), the second streams each body
 * through its transfer decoder. message/rfc822 parts are yielded whole so the scanner recurses.
 */
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { Base64Decoder, QuotedPrintableDecoder, UuDecoder } from './decoders.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

/** Header lines past this are ignored (but still skipped), so a header bomb cannot grow memory. */
const MAX_HEADER_BYTES = 64 * 1024;
/** Bytes of a line kept for inspection; the rest of a long line is body data we only skip. */
const MAX_INSPECT = 998;
/** Nested multiparts deeper than this are treated as opaque bodies (RFC 2046 sets no limit). */
const MAX_NESTING = 64;

const HEADER_NAMES =
  /^(from|to|cc|subject|date|received|return-path|message-id|mime-version|content-type|content-transfer-encoding|delivered-to|reply-to|x-[a-z0-9-]+):/i;

interface PartLocation {
  name: string;
  start: number;
  end: number;
  encoding: 'base64' | 'quoted-printable' | 'uuencode' | 'identity';
}

interface Entity {
  headers: string[];
  headerBytes: number;
}

export function looksLikeMail(head: Buffer): boolean {
  const text = head.subarray(0, 4096).toString('latin1');
  const lines = text.split(/\r?\n/);
  let i = 0;
  if (lines[0]?.startsWith('From ')) i = 1;
  let known = 0;
  for (; i < lines.length && i < 40; i++) {
    const l = lines[i]!;
    if (l === '') break;
    if (/^[ \t]/.test(l)) continue;
    if (!/^[\x21-\x39\x3b-\x7e]+:/.test(l)) return false;
    if (HEADER_NAMES.test(l)) known++;
  }
  return known >= 2;
}

/** Reads a header parameter, including RFC 2231 `name*=charset''percent-encoded` forms. */
export function headerParam(value: string, param: string): string | undefined {
  const ext = new RegExp(`;\\s*${param}\\*(?:0\\*)?=\\s*([^;]*)`, 'i').exec(value);
  if (ext) {
    const raw = ext[1]!.trim().replace(/^"|"$/g, '');
    const m = /^([^']*)'[^']*'(.*)$/.exec(raw);
    try {
      return decodeURIComponent(m ? m[2]! : raw);
    } catch {
      return m ? m[2]! : raw;
    }
  }
  const plain = new RegExp(`;\\s*${param}\\s*=\\s*("(?:[^"\\\\]|\\\\.)*"|[^;\\s]*)`, 'i').exec(value);
  if (!plain) return undefined;
  return plain[1]!.replace(/^"|"$/g, '').replace(/\\(.)/g, '$1');
}

function field(entity: Entity, name: string): string {
  const prefix = `${name.toLowerCase()}:`;
  for (const h of entity.headers)
    if (h.toLowerCase().startsWith(prefix)) return h.slice(prefix.length).trim();
  return '';
}

/** Splits a source into lines with absolute offsets; only the first MAX_INSPECT bytes of a line are kept. */
async function* lines(
  source: ObjectSource,
  signal: AbortSignal,
): AsyncGenerator<{ text: string; start: number; next: number }> {
  let pending: Buffer[] = [];
  let pendingLen = 0;
  let lineStart = 0;
  let pos = 0;
  for await (const chunk of source.stream()) {
    if (signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(10, from);
      const end = nl < 0 ? chunk.length : nl;
      if (pendingLen < MAX_INSPECT) {
        const piece = chunk.subarray(from, Math.min(end, from + (MAX_INSPECT - pendingLen)));
        pending.push(piece);
        pendingLen += piece.length;
      }
      if (nl < 0) break;
      const text = Buffer.concat(pending).toString('latin1').replace(/\r$/, '');
      const next = pos + nl + 1;
      yield { text, start: lineStart, next };
      lineStart = next;
      pending = [];
      pendingLen = 0;
      from = nl + 1;
    }
    pos += chunk.length;
  }
  if (lineStart < source.size)
    yield { text: Buffer.concat(pending).toString('latin1'), start: lineStart, next: source.size };
}

/** First pass: where every leaf body lies. */
async function indexParts(source: ObjectSource, ctx: UnpackContext): Promise<PartLocation[]> {
  const parts: PartLocation[] = [];
  const boundaries: string[] = [];
  let entity: Entity | null = { headers: [], headerBytes: 0 };
  let leaf: { name: string; start: number; encoding: PartLocation['encoding'] } | null = null;
  let uu: { name: string; start: number } | null = null;
  let first = true;
  let prevLineStart = 0;

  const push = (p: PartLocation) => {
    if (p.end <= p.start) return;
    if (parts.length >= ctx.maxFiles)
      throw new UnpackLimitError('MaxFiles', `mime: more than ${ctx.maxFiles} parts`);
    parts.push(p);
  };
  const closeLeaf = (end: number) => {
    // Writers often omit the final `end` line; the block then runs to the end of its part.
    if (uu) push({ name: uu.name, start: uu.start, end, encoding: 'uuencode' });
    if (leaf) push({ name: leaf.name, start: leaf.start, end, encoding: leaf.encoding });
    leaf = null;
    uu = null;
  };

  for await (const line of lines(source, ctx.signal)) {
    const t = line.text;
    if (first && t.startsWith('From ')) {
      first = false;
      continue;
    }
    first = false;

    if (entity) {
      if (t === '') {
        const ctype = field(entity, 'content-type').toLowerCase();
        const cte = field(entity, 'content-transfer-encoding').toLowerCase();
        const disposition = field(entity, 'content-disposition');
        const name =
          headerParam(disposition, 'filename') ??
          headerParam(field(entity, 'content-type'), 'name') ??
          `part-${parts.length + 1}`;
        const boundary = ctype.startsWith('multipart/')
          ? headerParam(field(entity, 'content-type'), 'boundary')
          : undefined;
        entity = null;
        if (boundary && boundaries.length < MAX_NESTING) {
          boundaries.push(boundary);
        } else {
          const encoding =
            cte === 'base64' ? 'base64' : cte === 'quoted-printable' ? 'quoted-printable' : 'identity';
          leaf = { name, start: line.next, encoding };
        }
      } else if (entity.headerBytes < MAX_HEADER_BYTES) {
        if (/^[ \t]/.test(t) && entity.headers.length)
          entity.headers[entity.headers.length - 1] += ` ${t.trim()}`;
        else entity.headers.push(t);
        entity.headerBytes += t.length;
      }
      prevLineStart = line.start;
      continue;
    }

    // A boundary line ends the current part; the CRLF before it belongs to the boundary (RFC 2046 5.1.1).
    const b = t.startsWith('--')
      ? boundaries.findLastIndex((x) => t === `--${x}` || t === `--${x}--` || t.startsWith(`--${x} `))
      : -1;
    if (b >= 0) {
      closeLeaf(
        Math.max(
          leaf ? leaf.start : 0,
          line.start - (line.start > 0 ? crlfBefore(line.start, prevLineStart) : 0),
        ),
      );
      const closing = t.startsWith(`--${boundaries[b]}--`);
      boundaries.length = closing ? b : b + 1;
      if (!closing) entity = { headers: [], headerBytes: 0 };
      prevLineStart = line.start;
      continue;
    }

    // uuencoded blocks appear in text parts and in x-uuencode parts alike.
    if (leaf && leaf.encoding === 'identity') {
      const m = /^begin(?:-base64)? [0-7]{3,4} (.+)$/.exec(t);
      if (m && !uu) uu = { name: m[1]!.trim(), start: line.next };
      else if (uu && t.trimEnd() === 'end') {
        push({ name: uu.name, start: uu.start, end: line.start, encoding: 'uuencode' });
        uu = null;
      }
    }
    prevLineStart = line.start;
  }
  closeLeaf(source.size);
  return parts;
}

/** Length of the line break just before `lineStart` (the line break is part of the boundary delimiter). */
function crlfBefore(lineStart: number, prevLineStart: number): number {
  return lineStart - prevLineStart >= 2 ? 2 : 1;
}

async function* decode(source: ObjectSource, p: PartLocation, ctx: UnpackContext): AsyncGenerator<Buffer> {
  const decoder =
    p.encoding === 'base64'
      ? new Base64Decoder()
      : p.encoding === 'quoted-printable'
        ? new QuotedPrintableDecoder()
        : p.encoding === 'uuencode'
          ? new UuDecoder()
          : null;
  let produced = 0;
  const emit = function* (out: Buffer) {
    if (out.length === 0) return;
    produced += out.length;
    if (produced > ctx.maxFileSize)
      throw new UnpackLimitError('MaxFileSize', `mime: part "${p.name}" exceeds ${ctx.maxFileSize} bytes`);
    yield out;
  };
  for await (const chunk of source.stream(p.start, p.end)) {
    if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
    yield* emit(decoder ? decoder.write(chunk) : chunk);
  }
  if (decoder) yield* emit(decoder.end());
}

export const mimeUnpacker: Unpacker = {
  type: 'mime',
  detect: (head) => looksLikeMail(head),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    let parts: PartLocation[];
    try {
      parts = await indexParts(source, ctx);
    } catch (e) {
      if (e instanceof UnpackLimitError) throw e;
      throw new UnpackError('mime', 'ERR_MIME_CORRUPT', (e as Error).message, { cause: e });
    }
    // A single identity part spanning the whole body is the message itself: nothing to unpack.
    for (const p of parts) {
      if (p.encoding === 'identity' && p.start === 0 && p.end === source.size) continue;
      yield { name: p.name, open: () => decode(source, p, ctx) };
    }
  },
};
