/**
 * BDAT from clients (RFC 3030 CHUNKING): a message arrives as a run of `BDAT <size>` chunks, the
 * last one marked `LAST`. Each chunk's octets are spooled as they are; non-last chunks are answered
 * by the relay (250, "octets received": nothing is accepted yet), and at `BDAT … LAST` the whole
 * message is judged and delivered like a DATA message (transaction.ts), the client's final reply
 * being the server's own.
 *
 * The relay does not offer BINARYMIME, so content must be lines ending in CRLF (RFC 3030 §3, RFC
 * 5321 §2.3.8): a bare CR or LF is refused rather than passed on, since a server reading the message
 * through DATA could take it for a line end (SMTP smuggling). Whatever the outcome, every announced
 * octet is read, so the command stream stays in step.
 */

import type { Spool } from '../../engine/source.js';
import type { SmtpChannel } from './channel.js';
import type { SmtpContext } from './context.js';
import type { ServerLeg } from './server-leg.js';
import { UPSTREAM_KEEPALIVE_MS } from './timeouts.js';
import { type Envelope, messageSpool } from './transaction.js';

const CR = 0x0d;
const LF = 0x0a;
const BDAT_ARG = /^(\d{1,15})( +LAST)?$/i;

/** `BDAT <size> [LAST]` arguments, or null when malformed. */
export function parseBdat(arg: string): { size: number; last: boolean } | null {
  const m = BDAT_ARG.exec(arg.trim());
  return m ? { size: Number(m[1]), last: m[2] !== undefined } : null;
}

/** Notices a CR not followed by LF, or an LF not preceded by CR, across chunk boundaries. */
export class LineEndingCheck {
  private pendingCr = false;
  private bad = false;

  push(c: Buffer): void {
    if (this.bad || c.length === 0) return;
    if (this.pendingCr && c[0] !== LF) {
      this.bad = true;
      return;
    }
    // CRs and LFs walked in step, one line at a time: each LF must come right after a CR and each
    // CR right before an LF. The searches run on a latin1 copy (no per-call binding cost, see dot.ts).
    const text = c.toString('latin1');
    let i = this.pendingCr ? 1 : 0;
    for (;;) {
      const lf = text.indexOf('\n', i);
      const cr = text.indexOf('\r', i);
      if (lf < 0) {
        // Only a CR in the last byte may still be completed by the next chunk.
        if (cr >= 0 && cr !== c.length - 1) this.bad = true;
        break;
      }
      if (cr < 0 || cr !== lf - 1) {
        this.bad = true;
        return;
      }
      i = lf + 1;
    }
    this.pendingCr = c[c.length - 1] === CR;
  }

  /** A bare CR or LF has been seen (final, whatever follows). */
  get failed(): boolean {
    return this.bad;
  }

  /** Everything pushed is CRLF-clean (a trailing lone CR is not). */
  get clean(): boolean {
    return !this.bad && !this.pendingCr;
  }
}

/** Reads and drops one chunk's octets (a refused BDAT). False when the client went away. */
export async function discardChunk(
  client: SmtpChannel,
  size: number,
  idleTimeoutMs: number,
): Promise<boolean> {
  client.reader.startChunk(size);
  for (;;) {
    const ev = await client.next(idleTimeoutMs);
    if (!ev) return false;
    if (ev.type === 'end') return true;
  }
}

/** One message arriving in chunks. */
export class ChunkedMessage {
  readonly spool: Spool;
  private received = 0;
  private tooBig = false;
  private readonly lines = new LineEndingCheck();

  constructor(
    readonly envelope: Envelope,
    private readonly ctx: SmtpContext,
  ) {
    this.spool = messageSpool(ctx);
  }

  /** How the message stands once its last chunk is in. */
  get outcome(): 'ok' | 'toobig' | 'bad' {
    if (this.tooBig) return 'toobig';
    return this.lines.clean ? 'ok' : 'bad';
  }

  /** Reads one chunk of `size` octets into the spool. False when the client went away. */
  async receive(client: SmtpChannel, server: ServerLeg, size: number): Promise<boolean> {
    client.reader.startChunk(size);
    for (;;) {
      const ev = await client.next(this.ctx.cfg.idleTimeout);
      if (!ev) return false;
      if (ev.type === 'end') return true;
      if (ev.type !== 'data') continue;
      this.received += ev.chunk.length;
      if (this.received > this.ctx.cfg.maxMessageSize) this.tooBig = true;
      // Past the limit or after a bare line ending the rest is read and dropped (the verdict is made).
      if (!this.tooBig) {
        this.lines.push(ev.chunk);
        if (!this.lines.failed) await this.spool.write(ev.chunk);
      }
      if (Date.now() - server.lastUse > UPSTREAM_KEEPALIVE_MS) await server.housekeeping('NOOP');
    }
  }

  dispose(): Promise<void> {
    return this.spool.dispose();
  }
}
