/**
 * Streaming canonicalization of message content for the registry signature (README
 * "Anti-phishing registry", canonical form). It is RFC 6376 §3.4.4 "relaxed" body
 * canonicalization applied to Unicode text in NFC:
 *
 *  - a line ends at LF; a CR right before the LF belongs to the line ending (CRLF ≡ LF);
 *  - runs of SP/HTAB within a line become one SP, SP/HTAB at the end of a line are removed;
 *  - empty lines at the end of the content are removed; a non-empty content ends with CRLF
 *    (added when missing); empty content stays empty; every line ends CRLF in the output;
 *  - each line is normalized to NFC (no NFC composition crosses a line break);
 *  - bytes that are not well-formed UTF-8 (Unicode Table 3-7) are kept as they are, byte by byte,
 *    so binary 8bit bodies still sign injectively (never replaced by U+FFFD, which would let two
 *    different bodies share a signature).
 *
 * Memory stays bounded for any input: complete lines are processed per chunk, and a line longer
 * than LONG_LINE is emitted in pieces cut between two ASCII non-blank characters, where neither
 * white-space folding nor NFC composition can reach across the cut.
 */

const LF = 0x0a;
const LONG_LINE = 1 << 20;
const fatalDecoder = new TextDecoder('utf-8', { fatal: true });

export class BodyCanonicalizer {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private pendingBlank = 0;
  private midLine = false;
  constructor(private readonly emit: (bytes: Buffer) => void) {}

  write(chunk: Uint8Array | string): void {
    let buf =
      typeof chunk === 'string'
        ? Buffer.from(chunk, 'utf8')
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const lastLf = buf.lastIndexOf(LF);
    if (lastLf < 0) {
      this.hold(buf);
      return;
    }
    const region = this.partialBytes
      ? Buffer.concat([...this.partial, buf.subarray(0, lastLf + 1)])
      : buf.subarray(0, lastLf + 1);
    buf = buf.subarray(lastLf + 1);
    this.partial = [];
    this.partialBytes = 0;
    this.lines(region);
    if (buf.length) this.hold(Buffer.from(buf)); // copy: the caller may reuse its chunk
  }

  end(): void {
    if (this.partialBytes) {
      const rest = Buffer.concat([...this.partial, Buffer.from('\n')]);
      this.partial = [];
      this.partialBytes = 0;
      this.lines(rest);
    }
    // Trailing empty lines are dropped: pendingBlank is simply never emitted.
    this.pendingBlank = 0;
  }

  private hold(buf: Buffer): void {
    this.partial.push(buf);
    this.partialBytes += buf.length;
    if (this.partialBytes > LONG_LINE) this.flushLongLine();
  }

  /** Emits the safe prefix of an over-long pending line (see the module comment). */
  private flushLongLine(): void {
    const line = Buffer.concat(this.partial);
    let cut = -1;
    for (let i = line.length - 1; i > 0; i--) {
      if (isAsciiNonBlank(line[i] as number) && isAsciiNonBlank(line[i - 1] as number)) {
        cut = i;
        break;
      }
    }
    this.partial = [line];
    this.partialBytes = line.length;
    if (cut <= 0) return; // no safe cut yet (e.g. all non-ASCII): keep holding
    let text = decode(line.subarray(0, cut)).normalize('NFC');
    text = text.replace(/[ \t]+/g, ' ');
    this.flushBlank();
    this.emit(encode(text));
    this.midLine = true;
    const rest = Buffer.from(line.subarray(cut));
    this.partial = [rest];
    this.partialBytes = rest.length;
  }

  /** `region` is whole lines, ending with LF. */
  private lines(region: Buffer): void {
    let text = decode(region).normalize('NFC');
    text = text
      .replace(/\r\n/g, '\n')
      .replace(/[ \t]+/g, ' ')
      .replace(/ \n/g, '\n');
    let k = 0;
    while (k < text.length && text.charCodeAt(text.length - 1 - k) === LF) k++;
    const body = text.slice(0, text.length - k);
    if (body === '' && !this.midLine) {
      this.pendingBlank += k;
      return;
    }
    // The first line of the region may finish a line already partly emitted (midLine): it is not
    // blank even if this part of it is empty.
    this.flushBlank();
    this.emit(encode(`${body}\n`.replace(/\n/g, '\r\n')));
    this.midLine = false;
    this.pendingBlank = k - 1;
  }

  private flushBlank(): void {
    if (this.pendingBlank) this.emit(Buffer.from('\r\n'.repeat(this.pendingBlank)));
    this.pendingBlank = 0;
  }
}

function isAsciiNonBlank(b: number): boolean {
  return b > 0x20 && b < 0x7f;
}

/** Canonical bytes of a whole content (tests, documentation). */
export function canonicalBody(content: Uint8Array | string): Buffer {
  const out: Buffer[] = [];
  const c = new BodyCanonicalizer((b) => out.push(b));
  c.write(content);
  c.end();
  return Buffer.concat(out);
}

// ---- UTF-8 with byte escapes: ill-formed bytes become lone surrogates U+DC80..U+DCFF and back ----

function decode(bytes: Uint8Array): string {
  try {
    return fatalDecoder.decode(bytes);
  } catch {
    return decodeEscaped(bytes);
  }
}

function encode(text: string): Buffer {
  const buf = Buffer.from(text, 'utf8');
  // Buffer.from writes a lone surrogate as EF BF BD; only then can the text hold escapes.
  return buf.includes(REPLACEMENT) ? encodeEscaped(text) : buf;
}
const REPLACEMENT = Buffer.from([0xef, 0xbf, 0xbd]);

function seqLength(b: Uint8Array, i: number): number {
  const c = b[i] as number;
  if (c < 0x80) return 1;
  const in_ = (j: number, lo: number, hi: number) =>
    i + j < b.length && (b[i + j] as number) >= lo && (b[i + j] as number) <= hi;
  if (c >= 0xc2 && c <= 0xdf) return in_(1, 0x80, 0xbf) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const lo = c === 0xe0 ? 0xa0 : 0x80;
    const hi = c === 0xed ? 0x9f : 0xbf;
    return in_(1, lo, hi) && in_(2, 0x80, 0xbf) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const lo = c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xf4 ? 0x8f : 0xbf;
    return in_(1, lo, hi) && in_(2, 0x80, 0xbf) && in_(3, 0x80, 0xbf) ? 4 : 0;
  }
  return 0;
}

function decodeEscaped(b: Uint8Array): string {
  const parts: string[] = [];
  let start = 0;
  let i = 0;
  while (i < b.length) {
    const n = seqLength(b, i);
    if (n > 0) {
      i += n;
      continue;
    }
    if (i > start) parts.push(fatalDecoder.decode(b.subarray(start, i)));
    parts.push(String.fromCharCode(0xdc00 + (b[i] as number)));
    i++;
    start = i;
  }
  if (i > start) parts.push(fatalDecoder.decode(b.subarray(start, i)));
  return parts.join('');
}

function encodeEscaped(text: string): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const u = text.charCodeAt(i);
    if (u >= 0xd800 && u <= 0xdbff && i + 1 < text.length) {
      const v = text.charCodeAt(i + 1);
      if (v >= 0xdc00 && v <= 0xdfff) {
        i++;
        continue;
      }
    }
    if (u >= 0xdc80 && u <= 0xdcff) {
      if (i > start) parts.push(Buffer.from(text.slice(start, i), 'utf8'));
      parts.push(Buffer.from([u - 0xdc00]));
      start = i + 1;
    }
  }
  if (start < text.length) parts.push(Buffer.from(text.slice(start), 'utf8'));
  return Buffer.concat(parts);
}
