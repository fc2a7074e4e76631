/**
 * FTP replies (RFC 959 §4.2): one line `NNN text`, or a multi-line reply that opens with `NNN-text`
 * and ends at the first line that starts with the same code followed by a space. Lines in between
 * are free text (they may even start with digits), so unlike SMTP only the first and the last line
 * carry the code. Sans-IO: lines in (terminator removed), complete replies out.
 *
 * Text is handled as latin1 so that a server's bytes (often UTF-8 file names in 257/150 replies) pass
 * through a relay unchanged.
 */
import { ProtocolError } from '../../errors.js';

export interface FtpReply {
  code: number;
  /**
   * The text of each line: the first and last without their `NNN-`/`NNN ` prefix, the lines in
   * between exactly as received. A single-line reply has one element.
   */
  lines: string[];
}

/** A misbehaving server's reply may not grow without bound (STAT of a huge folder is the big one). */
export const MAX_REPLY_LINES = 10_000;

const FIRST = /^([1-5][0-9][0-9])([ -]|$)/;

export class FtpReplyAssembler {
  private code = 0;
  private lines: string[] = [];

  get partial(): boolean {
    return this.lines.length > 0;
  }

  /** Feeds one line; returns the reply it completes, or null while a multi-line reply is open. */
  push(line: Buffer | string): FtpReply | null {
    const text = typeof line === 'string' ? line : line.toString('latin1');
    if (this.lines.length === 0) {
      const m = FIRST.exec(text);
      if (!m)
        throw new ProtocolError(
          'ERR_FTP_BAD_REPLY',
          `malformed reply line: ${JSON.stringify(text.slice(0, 80))}`,
          502,
        );
      const code = Number(m[1]);
      const rest = text.slice(4);
      if (m[2] === '-') {
        this.code = code;
        this.lines = [rest];
        return null;
      }
      return { code, lines: [rest] };
    }
    // RFC 959 §4.2: the reply ends with the line that begins with the same code and a space.
    if (text.startsWith(`${this.code} `) || text === String(this.code)) {
      const reply = { code: this.code, lines: [...this.lines, text.slice(4)] };
      this.lines = [];
      this.code = 0;
      return reply;
    }
    if (this.lines.length >= MAX_REPLY_LINES)
      throw new ProtocolError('ERR_FTP_BAD_REPLY', `reply longer than ${MAX_REPLY_LINES} lines`, 502);
    this.lines.push(text);
    return null;
  }
}

/** Text that may go into one reply line: no CR/LF (a name must not start a reply of its own). */
export function replySafe(text: string, max = 200): string {
  const clean = text.replace(/[\r\n\0]/g, '_');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

/**
 * The reply on the wire. Middle lines that would look like the end of the reply (`NNN ` with the
 * same code) are indented by one space, as RFC 959 §4.2 asks of servers.
 */
export function formatReply(r: FtpReply): string {
  const n = r.lines.length;
  if (n <= 1) return `${r.code} ${r.lines[0] ?? ''}\r\n`;
  const end = `${r.code} `;
  const out = [`${r.code}-${r.lines[0]}`];
  for (let i = 1; i < n - 1; i++) {
    const l = r.lines[i]!;
    out.push(l.startsWith(end) ? ` ${l}` : l);
  }
  out.push(`${r.code} ${r.lines[n - 1]}`);
  return `${out.join('\r\n')}\r\n`;
}

export function reply(code: number, ...lines: string[]): FtpReply {
  return { code, lines: lines.length ? lines : [''] };
}

/** One line for logs. */
export function replySummary(r: FtpReply): string {
  return `${r.code} ${replySafe(r.lines[r.lines.length - 1] ?? '', 120)}`;
}

export function isPreliminary(r: FtpReply): boolean {
  return r.code >= 100 && r.code < 200;
}

/**
 * The file name a server gives in its reply to STOU: RFC 1123 §4.1.2.9 fixes the text of that 125
 * or 150 as `FILE: name` (vsftpd and ProFTPD write it so). Null when no line has that form, or when the name holds
 * a character that could not be sent back in a command (DELE).
 */
export function stouFileName(r: FtpReply): string | null {
  for (const line of r.lines) {
    // Exactly one space after the colon: a name's own leading or trailing spaces are part of it.
    const m = /^FILE: (.+)$/.exec(line);
    if (m?.[1] && !/[\r\n\0]/.test(m[1])) return m[1];
  }
  return null;
}
