/**
 * clamd's request side, sans-IO (ClamAV 1.4 clamd/server-th.c get_cmd, parse_dispatch_cmd,
 * handle_stream; clamd/session.c parse_command): bytes in, events out, no socket.
 *
 * Framing: `z` + command + NUL, `n` + command + LF (a trailing CR is dropped, cli_chomp), or an
 * unprefixed "legacy" command that is one packet, optionally ended by LF. After `INSTREAM` the bytes
 * are chunks `<uint32 BE length><data>` until a zero length; a chunk larger than what is left of
 * StreamMaxLength is refused (`INSTREAM size limit exceeded. ERROR`). Over-long commands end the
 * connection without a reply, as clamd does when its command buffer fills.
 */

export type Terminator = '\0' | '\n';

/** The commands of ClamAV 1.4's table, in its order (VERSIONCOMMANDS prints them so). */
export const CLAMD_COMMANDS = [
  'SCAN',
  'QUIT',
  'RELOAD',
  'PING',
  'CONTSCAN',
  'VERSIONCOMMANDS',
  'VERSION',
  'END',
  'SHUTDOWN',
  'MULTISCAN',
  'FILDES',
  'STATS',
  'IDSESSION',
  'INSTREAM',
  'DETSTATSCLEAR',
  'DETSTATS',
  'ALLMATCHSCAN',
] as const;
export type ClamdCommandName = (typeof CLAMD_COMMANDS)[number];

/** Commands that take a path argument. */
const NEEDS_ARG = new Set<ClamdCommandName>(['SCAN', 'CONTSCAN', 'MULTISCAN', 'ALLMATCHSCAN']);
/** Commands clamd refuses without a z/n prefix (support_old = false in session.c). */
const PREFIX_ONLY = new Set<ClamdCommandName>([
  'VERSIONCOMMANDS',
  'END',
  'IDSESSION',
  'INSTREAM',
  'ALLMATCHSCAN',
]);

export type ClamdEvent =
  | { kind: 'command'; name: ClamdCommandName; arg: string | null; term: Terminator; legacy: boolean }
  /** Not a command clamd knows, or one with a missing/extra argument: reply UNKNOWN COMMAND, close. */
  | { kind: 'unknown'; term: Terminator; legacy: boolean }
  /** INSTREAM data, in order; the subarray aliases the pushed buffer. */
  | { kind: 'chunk'; data: Buffer }
  | { kind: 'stream-end' }
  /** A chunk would exceed StreamMaxLength: reply `INSTREAM size limit exceeded. ERROR`, close. */
  | { kind: 'stream-limit'; term: Terminator }
  /** A command longer than maxCommandLength: close without a reply. */
  | { kind: 'too-long' };

export interface ClamdParserOptions {
  /** Total INSTREAM bytes per stream (StreamMaxLength). */
  streamMaxLength: number;
  /** Longest command accepted, prefix and terminator excluded (clamd's buffer holds a bit over PATH_MAX). */
  maxCommandLength?: number;
}

/** Matches one command text (prefix and terminator removed) against the table. */
export function parseCommandText(
  text: string,
  legacy: boolean,
): { name: ClamdCommandName; arg: string | null } | null {
  const sp = text.indexOf(' ');
  const word = sp < 0 ? text : text.slice(0, sp);
  const name = CLAMD_COMMANDS.find((c) => c === word);
  if (!name) return null;
  if (legacy && PREFIX_ONLY.has(name)) return null;
  if (NEEDS_ARG.has(name)) {
    const arg = sp < 0 ? '' : text.slice(sp + 1);
    return arg.length > 0 ? { name, arg } : null;
  }
  return sp < 0 ? { name, arg: null } : null;
}

export class ClamdParser {
  private buf: Buffer = Buffer.alloc(0);
  private mode: 'command' | 'stream' | 'closed' = 'command';
  /** Bytes of the current chunk still to come (stream mode); 0 means a length header is next. */
  private chunkLeft = 0;
  private quota = 0;
  private streamTerm: Terminator = '\0';
  private readonly maxCommand: number;

  constructor(private readonly opts: ClamdParserOptions) {
    this.maxCommand = opts.maxCommandLength ?? 8192;
  }

  get inStream(): boolean {
    return this.mode === 'stream';
  }

  get closed(): boolean {
    return this.mode === 'closed';
  }

  /** Feeds bytes; returns the events they complete. After a closing event, further bytes are ignored. */
  push(data: Buffer): ClamdEvent[] {
    const out: ClamdEvent[] = [];
    if (this.mode === 'closed') return out;
    let input = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    this.buf = Buffer.alloc(0);
    while (input.length > 0 && !this.closed) {
      input = this.mode === 'stream' ? this.stream(input, out) : this.command(input, out);
    }
    return out;
  }

  /** One step in command mode: returns the unconsumed rest (stashing an incomplete command). */
  private command(input: Buffer, out: ClamdEvent[]): Buffer {
    const prefix = input[0];
    if (prefix === 0x7a /* z */ || prefix === 0x6e /* n */) {
      const term: Terminator = prefix === 0x7a ? '\0' : '\n';
      const end = input.indexOf(prefix === 0x7a ? 0 : 10, 1);
      if (end < 0) {
        if (input.length - 1 > this.maxCommand) return this.close(out, { kind: 'too-long' });
        this.buf = Buffer.from(input);
        return Buffer.alloc(0);
      }
      if (end - 1 > this.maxCommand) return this.close(out, { kind: 'too-long' });
      let text = input.toString('latin1', 1, end);
      if (term === '\n') text = text.replace(/[\r\n]+$/, '');
      this.emitCommand(text, term, false, out);
      return input.subarray(end + 1);
    }
    // Legacy: one packet is one command, optionally ended by LF; trailing CR/LF dropped.
    const lf = input.indexOf(10);
    const end = lf < 0 ? input.length : lf;
    if (end > this.maxCommand) return this.close(out, { kind: 'too-long' });
    const text = input.toString('latin1', 0, end).replace(/[\r\n]+$/, '');
    this.emitCommand(text, '\n', true, out);
    return lf < 0 ? Buffer.alloc(0) : input.subarray(lf + 1);
  }

  private emitCommand(text: string, term: Terminator, legacy: boolean, out: ClamdEvent[]): void {
    const cmd = parseCommandText(text, legacy);
    if (!cmd) {
      this.close(out, { kind: 'unknown', term, legacy });
      return;
    }
    out.push({ kind: 'command', name: cmd.name, arg: cmd.arg, term, legacy });
    if (cmd.name === 'INSTREAM') {
      this.mode = 'stream';
      this.chunkLeft = 0;
      this.quota = this.opts.streamMaxLength;
      this.streamTerm = term;
    }
  }

  private stream(input: Buffer, out: ClamdEvent[]): Buffer {
    if (this.chunkLeft === 0) {
      if (input.length < 4) {
        this.buf = Buffer.from(input);
        return Buffer.alloc(0);
      }
      const len = input.readUInt32BE(0);
      if (len === 0) {
        out.push({ kind: 'stream-end' });
        this.mode = 'command';
        return input.subarray(4);
      }
      // server-th.c: `chunksize > quota` is refused, so a stream of exactly StreamMaxLength passes.
      if (len > this.quota) return this.close(out, { kind: 'stream-limit', term: this.streamTerm });
      this.quota -= len;
      this.chunkLeft = len;
      input = input.subarray(4);
      if (input.length === 0) return input;
    }
    const take = Math.min(this.chunkLeft, input.length);
    out.push({ kind: 'chunk', data: input.subarray(0, take) });
    this.chunkLeft -= take;
    return input.subarray(take);
  }

  private close(out: ClamdEvent[], ev: ClamdEvent): Buffer {
    out.push(ev);
    this.mode = 'closed';
    this.buf = Buffer.alloc(0);
    return Buffer.alloc(0);
  }
}
