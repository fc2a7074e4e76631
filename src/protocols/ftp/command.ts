/**
 * FTP command lines (RFC 959 §4.1, §5.3): a verb of letters, optionally a space and an argument.
 * Sans-IO: one line (terminator removed) in, a command or the reason it is refused out.
 *
 * Telnet control sequences (IAC IP, IAC DM — what clients put in front of ABOR, RFC 959 §4.1.3) are
 * dropped from the start of the line; any other byte below 0x20 (NUL, a lone CR) refuses the line,
 * since a relay that forwards it lets a client smuggle a second command past the gateway.
 */

export interface FtpCommand {
  /** Upper-cased verb. */
  verb: string;
  /** Everything after the single space that follows the verb (may be empty, may contain spaces). */
  arg: string;
  /** The line as forwarded (latin1), Telnet sequences removed. */
  raw: string;
}

export type ParsedCommand = { ok: true; command: FtpCommand } | { ok: false; reason: string };

const IAC = 0xff;
/** RFC 959 verbs are 3 or 4 letters; extensions (RFC 2389, 3659, 2428) keep to that; allow a little more. */
const VERB = /^[A-Za-z]{3,8}$/;

export function stripTelnet(line: Buffer): Buffer {
  let i = 0;
  while (i < line.length && line[i] === IAC) i += 2;
  // A Telnet Synch leaves a DM (0xF2) after the urgent mark on some stacks.
  while (i < line.length && line[i]! >= 0xf0) i++;
  return i === 0 ? line : line.subarray(Math.min(i, line.length));
}

export function parseCommand(lineBytes: Buffer): ParsedCommand {
  const line = stripTelnet(lineBytes);
  for (const b of line) {
    if (b < 0x20 || b === 0x7f) return { ok: false, reason: 'control character in command' };
  }
  const raw = line.toString('latin1');
  const space = raw.indexOf(' ');
  const verbText = space < 0 ? raw : raw.slice(0, space);
  if (!VERB.test(verbText)) return { ok: false, reason: 'unknown command' };
  return {
    ok: true,
    command: { verb: verbText.toUpperCase(), arg: space < 0 ? '' : raw.slice(space + 1), raw },
  };
}

/** Commands whose argument is a secret (RFC 959 PASS and ACCT). */
const SECRET = new Set(['PASS', 'ACCT']);

/** The command as it may appear in a log: never a password. */
export function redactCommand(c: FtpCommand): string {
  return SECRET.has(c.verb) ? `${c.verb} ****` : c.raw.slice(0, 300);
}
