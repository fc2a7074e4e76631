/**
 * Streaming transfer decoders (RFC 2045 §6.7, §6.8; uuencode as POSIX uuencode(1) writes it).
 * Each keeps only the few bytes that may straddle a chunk boundary, so output is identical however
 * the input is cut.
 */

export interface StreamDecoder {
  write(chunk: Buffer): Buffer;
  end(): Buffer;
}

const B64 = new Int8Array(256).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries())
  B64[c.charCodeAt(0)] = i;
B64['-'.charCodeAt(0)] = 62;
B64['_'.charCodeAt(0)] = 63;

/**
 * Base64, tolerant as mail readers are: characters outside the alphabet (line breaks, spaces, junk)
 * are skipped, padding is optional, the URL-safe alphabet is accepted. An `=` where a quantum is
 * incomplete ends the data (what follows is not part of it); an `=` between whole quanta is skipped.
 * Whole quanta go through Node's native decoder; only up to 3 characters are carried between chunks.
 */
export class Base64Decoder implements StreamDecoder {
  private pending = '';
  private done = false;

  write(chunk: Buffer): Buffer {
    if (this.done || chunk.length === 0) return Buffer.alloc(0);
    const out: Buffer[] = [];
    let rest = chunk.toString('latin1');
    for (;;) {
      const eq = rest.indexOf('=');
      this.pending += (eq < 0 ? rest : rest.slice(0, eq)).replace(NOT_BASE64, '');
      const whole = this.pending.length - (this.pending.length % 4);
      if (whole > 0) {
        out.push(Buffer.from(this.pending.slice(0, whole), 'base64'));
        this.pending = this.pending.slice(whole);
      }
      if (eq < 0) break;
      if (this.pending.length > 0) {
        out.push(this.end());
        this.done = true;
        break;
      }
      rest = rest.slice(eq + 1);
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** A final incomplete quantum: 2 or 3 characters still carry 1 or 2 bytes. */
  end(): Buffer {
    const tail = this.pending;
    this.pending = '';
    return tail.length >= 2 ? Buffer.from(tail, 'base64') : Buffer.alloc(0);
  }
}

const NOT_BASE64 = /[^A-Za-z0-9+/_-]+/g;

/**
 * A whole base64 body in one call to Node's decoder, or null when that would differ from
 * Base64Decoder. Node's decoder also skips bytes outside the alphabet (line breaks, junk; it accepts
 * the URL-safe alphabet too) and decodes a final 2-3 character quantum, but stops at the first `=`,
 * where Base64Decoder skips an `=` between whole quanta: so only a body whose `=` are all trailing
 * (no alphabet byte after the first) is decoded here. Saves the per-chunk regex and string copies,
 * most of a mail attachment's decoding cost.
 */
export function decodeBase64Whole(body: Buffer): Buffer | null {
  const eq = body.indexOf(0x3d);
  if (eq >= 0) for (let i = eq + 1; i < body.length; i++) if (B64[body[i]!]! >= 0) return null;
  return Buffer.from(body.toString('latin1'), 'base64');
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Quoted-printable: `=XX` escapes and `=` soft line breaks; a malformed escape passes through as is. */
export class QuotedPrintableDecoder implements StreamDecoder {
  private carry = Buffer.alloc(0);

  write(chunk: Buffer): Buffer {
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const out = Buffer.allocUnsafe(data.length);
    let o = 0;
    let i = 0;
    for (; i < data.length; i++) {
      const c = data[i]!;
      if (c !== 0x3d) {
        out[o++] = c;
        continue;
      }
      if (i + 2 >= data.length) break; // may straddle the chunk boundary
      const a = data[i + 1]!;
      const b = data[i + 2]!;
      if (a === 0x0d && b === 0x0a) {
        i += 2;
      } else if (a === 0x0a) {
        i += 1;
      } else if (hexVal(a) >= 0 && hexVal(b) >= 0) {
        out[o++] = (hexVal(a) << 4) | hexVal(b);
        i += 2;
      } else {
        out[o++] = c;
      }
    }
    this.carry = Buffer.from(data.subarray(i));
    return out.subarray(0, o);
  }

  end(): Buffer {
    const rest = this.carry;
    this.carry = Buffer.alloc(0);
    // A trailing "=" or "=\r" is a soft break at the very end; anything else is literal.
    return rest.length && !/^=\r?$/.test(rest.toString('latin1')) ? rest : Buffer.alloc(0);
  }
}

/** uuencode body lines (after `begin`, up to but excluding `end`): a length character, then groups of 4. */
export class UuDecoder implements StreamDecoder {
  private line: number[] = [];

  write(chunk: Buffer): Buffer {
    const parts: Buffer[] = [];
    for (const c of chunk) {
      if (c === 0x0a) {
        parts.push(this.decodeLine());
        this.line = [];
      } else if (c !== 0x0d && this.line.length < 1024) this.line.push(c);
    }
    return Buffer.concat(parts);
  }

  end(): Buffer {
    const out = this.decodeLine();
    this.line = [];
    return out;
  }

  private decodeLine(): Buffer {
    if (this.line.length === 0) return Buffer.alloc(0);
    const len = (this.line[0]! - 0x20) & 0x3f;
    const out = Buffer.alloc(len);
    let o = 0;
    for (let i = 1; o < len && i + 3 < this.line.length + 3; i += 4) {
      const v = (k: number) => ((this.line[i + k] ?? 0x20) - 0x20) & 0x3f;
      const n = (v(0) << 18) | (v(1) << 12) | (v(2) << 6) | v(3);
      for (const shift of [16, 8, 0]) if (o < len) out[o++] = (n >> shift) & 0xff;
    }
    return out.subarray(0, o);
  }
}
