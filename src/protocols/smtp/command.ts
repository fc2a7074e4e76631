/**
 * Client command lines (RFC 5321 §4.1): a verb of letters, optionally a space and arguments. Only the
 * shape is checked here; the real server judges the arguments, except the few the relay itself must
 * understand (MAIL FROM's SIZE parameter, AUTH's mechanism, BDAT's chunk size).
 */

export interface SmtpCommand {
  /** Upper-cased verb, e.g. "MAIL". */
  verb: string;
  /** Everything after the verb and its separating space, as sent. */
  arg: string;
  /** The line as sent (without CRLF), for forwarding unchanged. */
  raw: string;
}

export type ParsedCommand = { ok: true; command: SmtpCommand } | { ok: false; reason: string };

/** Verbs are 4 letters in RFC 5321 but extensions use longer ones (STARTTLS, XCLIENT). */
const VERB = /^[A-Za-z][A-Za-z0-9-]{1,15}$/;

/**
 * Parses one command line (terminator already removed). Mail content is 8-bit but commands are
 * ASCII, except the UTF-8 addresses SMTPUTF8 allows (RFC 6531 §3.3), so non-ASCII is accepted in
 * the arguments and refused in the verb; NUL and other control characters are refused anywhere.
 */
export function parseCommand(line: Buffer): ParsedCommand {
  for (const b of line) {
    if (b === 0x00 || (b < 0x20 && b !== 0x09) || b === 0x7f)
      return { ok: false, reason: 'control character in command' };
  }
  const raw = line.toString('utf8');
  if (raw.includes('\ufffd')) return { ok: false, reason: 'command is not valid UTF-8' };
  const sp = raw.indexOf(' ');
  const verbText = sp < 0 ? raw : raw.slice(0, sp);
  if (!VERB.test(verbText)) return { ok: false, reason: raw.length === 0 ? 'empty command' : 'bad verb' };
  const arg = sp < 0 ? '' : raw.slice(sp + 1);
  return { ok: true, command: { verb: verbText.toUpperCase(), arg, raw } };
}

/** ESMTP parameters after the path of MAIL FROM / RCPT TO (RFC 5321 §4.1.2 Mail-parameters). */
export function mailParameters(arg: string): Map<string, string | true> {
  const params = new Map<string, string | true>();
  const close = arg.indexOf('>');
  const rest = close >= 0 ? arg.slice(close + 1) : '';
  for (const p of rest.split(' ')) {
    if (!p) continue;
    const eq = p.indexOf('=');
    if (eq < 0) params.set(p.toUpperCase(), true);
    else params.set(p.slice(0, eq).toUpperCase(), p.slice(eq + 1));
  }
  return params;
}

/** The declared message size of MAIL FROM (RFC 1870), or null. */
export function declaredSize(arg: string): number | null {
  const v = mailParameters(arg).get('SIZE');
  if (typeof v !== 'string' || !/^\d{1,15}$/.test(v)) return null;
  return Number(v);
}

/**
 * The path of MAIL FROM:<path> or RCPT TO:<path> without its angle brackets ('' for the null
 * reverse-path `<>`). Only for reporting to policies; the server judges the syntax.
 */
export function pathOf(arg: string): string {
  const open = arg.indexOf('<');
  if (open < 0) {
    // Tolerated form without brackets: "FROM:addr".
    const colon = arg.indexOf(':');
    return (
      arg
        .slice(colon + 1)
        .trim()
        .split(' ')[0] ?? ''
    ).trim();
  }
  const close = arg.indexOf('>', open);
  return arg.slice(open + 1, close < 0 ? undefined : close);
}

/** What may be logged of a command: AUTH keeps only its mechanism (the rest is a credential). */
export function redactCommand(c: SmtpCommand): string {
  if (c.verb === 'AUTH') {
    const mech = c.arg.split(' ')[0] ?? '';
    return c.arg.includes(' ') ? `AUTH ${mech} ****` : `AUTH ${mech}`;
  }
  return c.raw.length > 200 ? `${c.raw.slice(0, 200)}…` : c.raw;
}
