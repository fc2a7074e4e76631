/**
 * The relay's side of the conversation with the real server once the session runs: one command, one
 * reply, in order (the relay never has more than one command outstanding toward the server except
 * where RFC 2920 lets it batch). Any failure on this leg — the server closing, timing out, sending a
 * malformed reply — becomes UpstreamLost, which the session answers with a 421 to the client.
 */

import type { ObjectSource } from '../../engine/source.js';
import { ScangateError } from '../../errors.js';
import { withTimeout } from '../../net/timeouts.js';
import type { SmtpChannel } from './channel.js';
import { DotStuffer } from './dot.js';
import { type Reply, replySummary } from './reply.js';
import { REPLY_TIMEOUTS } from './timeouts.js';

/** The server leg failed (closed, timed out, sent garbage): the client gets a 421. */
export class UpstreamLost extends ScangateError {
  constructor(cause: unknown) {
    super('ERR_SMTP_UPSTREAM_LOST', `mail server connection lost: ${(cause as Error)?.message ?? cause}`, {
      cause,
    });
  }
}

/**
 * Message content queued on the server socket before waiting for it to drain. The content is already
 * spooled (in memory up to spoolMemory), so queuing it adds no copy; a 100 KB message leaves in one
 * gathered write instead of one system call per 64 KiB block, and a large one never queues more.
 */
const QUEUED_CONTENT = 1024 * 1024;

export class ServerLeg {
  /** When the server last answered us (the NOOP keep-alive during a long upload counts from here). */
  lastUse = Date.now();
  /** Keywords of the server's last EHLO reply (empty after HELO): what it lets us use toward it. */
  offers: ReadonlySet<string> = new Set();

  constructor(readonly channel: SmtpChannel) {}

  /** Runs an operation on the server leg; any failure there becomes UpstreamLost. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const v = await fn();
      this.lastUse = Date.now();
      return v;
    } catch (e) {
      throw new UpstreamLost(e);
    }
  }

  /** Sends one line (a command, or an AUTH continuation) and reads the server's reply. */
  send(line: string | Buffer, timeoutMs: number = REPLY_TIMEOUTS.command): Promise<Reply> {
    return this.guard(async () => {
      await this.channel.write(
        typeof line === 'string' ? `${line}\r\n` : Buffer.concat([line, Buffer.from('\r\n')]),
      );
      return this.channel.readReply(timeoutMs);
    });
  }

  /**
   * Sends a group of commands in one write (RFC 2920 §3.1, only to a server that offered
   * PIPELINING); their replies are then read one by one with reply().
   */
  sendGroup(lines: readonly string[]): Promise<void> {
    return this.guard(() => this.channel.write(lines.map((l) => `${l}\r\n`).join('')));
  }

  /** Reads the next reply (to a command of a group sent with sendGroup). */
  reply(timeoutMs: number = REPLY_TIMEOUTS.command): Promise<Reply> {
    return this.guard(() => this.channel.readReply(timeoutMs));
  }

  /**
   * Sends a command whose reply only matters if it ends the session: RSET after a refused message,
   * NOOP while the client uploads. A 421 there is the server leaving.
   */
  async housekeeping(verb: 'RSET' | 'NOOP'): Promise<void> {
    const r = await this.send(verb);
    if (r.code === 421) throw new UpstreamLost(new Error(replySummary(r)));
  }

  /**
   * Offers a message and returns the server's reply to it. A server that offered CHUNKING gets
   * `BDAT <size> LAST` and the content as is (RFC 3030: no 354 round trip, no dot-stuffing, and the
   * reply to the LAST chunk is the server's acceptance, as the reply to "." is); any other gets DATA,
   * then on 354 the content dot-stuffed (RFC 5321 §4.5.2) and the final ".". The server's refusal of
   * DATA (452, 554, …) is returned as is: it is the answer to the client's message. Header fields,
   * content and terminator go out as one gathered write when the socket's buffer takes them.
   */
  deliver(prefix: Buffer, source: ObjectSource): Promise<Reply> {
    return this.offers.has('CHUNKING') ? this.deliverChunk(prefix, source) : this.deliverData(prefix, source);
  }

  private deliverData(prefix: Buffer, source: ObjectSource): Promise<Reply> {
    return this.guard(async () => {
      const ch = this.channel;
      await ch.write('DATA\r\n');
      const go = await ch.readReply(REPLY_TIMEOUTS.dataInit);
      if (go.code !== 354) return go;
      const stuffer = new DotStuffer();
      ch.hold();
      await this.writeBlock(stuffer.write(prefix));
      for await (const chunk of source.stream()) await this.writeBlock(stuffer.write(chunk));
      await this.writeBlock(stuffer.end());
      // If the server closes now, this throws: the client never gets a 250 that was not given.
      return ch.readReply(REPLY_TIMEOUTS.dataTermination);
    });
  }

  private deliverChunk(prefix: Buffer, source: ObjectSource): Promise<Reply> {
    return this.guard(async () => {
      try {
        return await this.sendChunk(prefix, source);
      } catch (e) {
        // Mid-chunk, any further byte (even the QUIT of a polite close) would count as content and
        // could complete the chunk: drop the connection so the server discards the partial message.
        this.channel.destroy();
        throw e;
      }
    });
  }

  private async sendChunk(prefix: Buffer, source: ObjectSource): Promise<Reply> {
    const ch = this.channel;
    const size = prefix.length + source.size;
    ch.hold();
    await this.writeBlock(Buffer.from(`BDAT ${size} LAST\r\n`, 'latin1'));
    await this.writeBlock(prefix);
    let sent = prefix.length;
    for await (const chunk of source.stream()) {
      // The server counts octets, not lines: a source that gave more than it declared would have
      // the excess read as commands. Never let that happen; the connection is dropped instead.
      sent += chunk.length;
      if (sent > size) throw new Error(`message source larger than its declared ${size} octets`);
      await this.writeBlock(chunk);
    }
    if (sent !== size) throw new Error(`message source gave ${sent} of its declared ${size} octets`);
    const r = await ch.readReply(REPLY_TIMEOUTS.dataTermination);
    if (r.code >= 400 && r.code !== 421) {
      // RFC 3030 §4.2: a refused chunk fails the transaction; make sure the server holds none.
      await ch.write('RSET\r\n');
      const reset = await ch.readReply(REPLY_TIMEOUTS.command);
      if (reset.code === 421) return reset;
    }
    return r;
  }

  /**
   * Queues message content on the held (corked) socket: up to QUEUED_CONTENT bytes go out together
   * when the reply is awaited. Past that it waits for the socket to drain, within RFC 5321
   * §4.5.3.2.5's 3 minutes for each block of data to be taken.
   */
  private async writeBlock(data: Buffer): Promise<void> {
    const wait = this.channel.queue(data, QUEUED_CONTENT);
    if (wait)
      await withTimeout(wait, REPLY_TIMEOUTS.dataBlock, () => new Error('data block not taken in time'));
  }

  /** Says QUIT without waiting for the answer and half-closes. */
  quit(): void {
    const ch = this.channel;
    try {
      if (!ch.closed) void ch.write('QUIT\r\n').catch(() => {});
    } catch {
      // ignore
    }
    ch.end();
  }

  destroy(): void {
    this.channel.destroy();
  }
}
