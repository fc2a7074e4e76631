/**
 * Server replies (RFC 5321 §4.2): one or more lines `CODE-text`, the last `CODE text` (or the bare
 * code). Lines are fed in one at a time; a complete reply comes out when its last line arrives.
 * Anything else — a code out of range, a continuation with a different code, a non-digit — is a
 * ProtocolError: a relay must not guess where a malformed reply ends.
 */
import { ProtocolError } from '../../errors.js';

export interface Reply {
  code: number;
  /** Text of each line, without code and separator. */
  lines: string[];
}

/** Replies from a misbehaving server may not grow without bound: lines per reply. */
export const MAX_REPLY_LINES = 1000;

const REPLY_LINE = /^([2-5][0-5][0-9])(?:([ -])(.*))?$/s;

export class ReplyAssembler {
  private code = 0;
  private lines: string[] = [];

  /** True while a multi-line reply has started and not finished. */
  get partial(): boolean {
    return this.lines.length > 0;
  }

  /** Feeds one line (terminator removed); returns the reply it completes, or null. */
  push(line: Buffer): Reply | null {
    const text = line.toString('utf8');
    const m = REPLY_LINE.exec(text);
    if (!m)
      throw new ProtocolError(
        'ERR_SMTP_BAD_REPLY',
        `malformed reply line: ${JSON.stringify(text.slice(0, 80))}`,
        502,
      );
    const code = Number(m[1]);
    if (this.lines.length > 0 && code !== this.code)
      throw new ProtocolError(
        'ERR_SMTP_BAD_REPLY',
        `reply code changed inside a multi-line reply (${this.code} then ${code})`,
        502,
      );
    this.code = code;
    this.lines.push(m[3] ?? '');
    if (this.lines.length > MAX_REPLY_LINES)
      throw new ProtocolError('ERR_SMTP_BAD_REPLY', `reply longer than ${MAX_REPLY_LINES} lines`, 502);
    if (m[2] === '-') return null;
    const reply = { code, lines: this.lines };
    this.lines = [];
    this.code = 0;
    return reply;
  }
}

/** Wire form of a reply. Empty `lines` gives one line with the bare code. */
export function formatReply(reply: Reply): Buffer {
  const lines = reply.lines.length ? reply.lines : [''];
  let out = '';
  lines.forEach((l, i) => {
    const last = i === lines.length - 1;
    // Our own text never holds CR/LF; a server's text cannot (the line splitter removed them).
    const clean = l.replace(/[\r\n]/g, ' ');
    out += `${reply.code}${last ? (clean ? ' ' : '') : '-'}${clean}\r\n`;
  });
  return Buffer.from(out, 'utf8');
}

export function reply(code: number, ...lines: string[]): Reply {
  return { code, lines };
}

export function isPositive(r: Reply): boolean {
  return r.code >= 200 && r.code < 400;
}

/** First line of a reply, for logs and events. */
export function replySummary(r: Reply): string {
  return `${r.code} ${r.lines[0] ?? ''}`.trim();
}
