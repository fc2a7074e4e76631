/**
 * The chunked coding of ICAP bodies (RFC 3507 §4.4.1 borrows HTTP/1.1's, RFC 9112 §7.1) with ICAP's
 * one addition: the "ieof" extension on the last chunk, saying a preview held the whole body (§4.5).
 * Sans-IO: step() reads from the queue and says what it found, or that it needs more bytes.
 */
import { validChunkExt } from '../http/syntax.js';
import type { ByteQueue } from './bytes.js';

export type ChunkStep =
  | { kind: 'data'; data: Buffer }
  /** The last chunk and its (dropped) trailer section have been read. */
  | { kind: 'last'; ieof: boolean }
  | { kind: 'need' }
  | { kind: 'bad'; code: 'ERR_ICAP_BAD_CHUNK' | 'ERR_ICAP_HEADER_TOO_LARGE'; message: string };

const CRLF = Buffer.from('\r\n');
const IEOF = /(?:^|;)[ \t]*ieof[ \t]*(?:$|;|=)/i;
const SIZE_LINE = /^([0-9A-Fa-f]+)(.*)$/;

type Phase = 'size' | 'data' | 'data-end' | 'trailer';

export class ChunkDecoder {
  private phase: Phase = 'size';
  private left = 0;
  private ieof = false;
  private trailerBytes = 0;

  constructor(
    private readonly q: ByteQueue,
    private readonly maxLine: number,
    private readonly maxTrailer: number,
  ) {}

  /** Starts a new body (or the part of a body after a preview). */
  reset(): void {
    this.phase = 'size';
    this.left = 0;
    this.ieof = false;
    this.trailerBytes = 0;
  }

  step(): ChunkStep {
    for (;;) {
      switch (this.phase) {
        case 'data': {
          if (this.q.length === 0) return { kind: 'need' };
          const data = this.q.take(this.left);
          this.left -= data.length;
          if (this.left === 0) this.phase = 'data-end';
          return { kind: 'data', data };
        }
        case 'data-end': {
          if (this.q.length < 2) {
            if (this.q.length === 1 && this.q.byteAt(0) !== 0x0d)
              return this.bad('chunk data not followed by CRLF');
            return { kind: 'need' };
          }
          if (this.q.byteAt(0) !== 0x0d || this.q.byteAt(1) !== 0x0a)
            return this.bad('chunk data not followed by CRLF');
          this.q.skip(2);
          this.phase = 'size';
          break;
        }
        case 'size': {
          const line = this.line(this.maxLine);
          if (typeof line !== 'string') return line;
          const m = SIZE_LINE.exec(line.replace(/^0+(?=[0-9A-Fa-f])/, ''));
          if (!m) return this.bad('invalid chunk size');
          if (m[1]!.length > 12) return this.bad('chunk size too large');
          if (m[2] && !validChunkExt(m[2])) return this.bad('invalid chunk extension');
          this.left = Number.parseInt(m[1]!, 16);
          if (this.left > 0) this.phase = 'data';
          else {
            this.ieof = IEOF.test(m[2] ?? '');
            this.phase = 'trailer';
          }
          break;
        }
        case 'trailer': {
          // Trailer fields are read line by line and dropped; the empty line ends the body.
          const line = this.line(this.maxTrailer - this.trailerBytes);
          if (typeof line !== 'string') {
            return line.kind === 'bad'
              ? this.bad('trailer section too large', 'ERR_ICAP_HEADER_TOO_LARGE')
              : line;
          }
          if (line === '') return { kind: 'last', ieof: this.ieof };
          if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:/.test(line)) return this.bad('invalid trailer field');
          this.trailerBytes += line.length + 2;
          break;
        }
      }
    }
  }

  /** One CRLF-terminated line (consumed), or what stops it. */
  private line(max: number): string | ChunkStep {
    const eol = this.q.find(CRLF);
    if (eol < 0) return this.q.length > max ? this.bad('line too long') : { kind: 'need' };
    if (eol > max) return this.bad('line too long');
    const text = this.q.text(0, eol);
    this.q.skip(eol + 2);
    return text;
  }

  private bad(
    message: string,
    code: 'ERR_ICAP_BAD_CHUNK' | 'ERR_ICAP_HEADER_TOO_LARGE' = 'ERR_ICAP_BAD_CHUNK',
  ): ChunkStep {
    return { kind: 'bad', code, message };
  }
}
