/**
 * One relayed SMTP connection: a before-queue, lockstep relay between a client and the real server.
 *
 * - Upstream first: the client hears nothing (no 220, no TLS ServerHello) until the server has
 *   greeted us; a server that cannot be reached is mirrored as a reset (or a 421, by config).
 * - Commands and replies pass one at a time in order, so the server's own answers — RCPT refusals,
 *   AUTH results, 421 — reach the client as the server gave them, and pipelined commands (RFC 2920)
 *   are answered in order.
 * - DATA is received and spooled completely, scanned, and only then offered to the server
 *   (transaction.ts); TLS on the client leg is client-tls.ts, the server leg server-leg.ts.
 */

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { SecurityEvent } from '../../admin/events.js';
import type { ScangateError } from '../../errors.js';
import { formatHostPort } from '../../net/connect.js';
import { relayAuth } from './auth.js';
import { SmtpChannel } from './channel.js';
import { ChunkedMessage, discardChunk, parseBdat } from './chunking.js';
import { acceptImplicitTls, refuseClient, startClientTls } from './client-tls.js';
import { declaredSize, parseCommand, pathOf, redactCommand, type SmtpCommand } from './command.js';
import type { SmtpContext } from './context.js';
import { ehloKeywords, rewriteEhlo } from './ehlo.js';
import type { ReaderEvent } from './reader.js';
import { type Reply, reply, replySummary } from './reply.js';
import { ServerLeg, UpstreamLost } from './server-leg.js';
import { REPLY_TIMEOUTS } from './timeouts.js';
import { type Envelope, transferMessage } from './transaction.js';
import { openUpstream, type UpstreamLeg } from './upstream.js';

/** Consecutive errors after which the client is dropped (Postfix smtpd_hard_error_limit). */
const MAX_ERRORS = 20;
/** Commands the relay never forwards: they would let a client speak for the relay, or reverse roles. */
const REFUSED_VERBS = new Set(['XCLIENT', 'XFORWARD', 'TURN', 'ATRN', 'XEXCH50']);
/** Commands that abandon a message being received by BDAT. */
const CHUNK_ENDERS = new Set(['RSET', 'EHLO', 'HELO', 'QUIT']);

/** RFC 2920 §3.1: commands that may sit anywhere in a group of pipelined commands. */
const GROUPABLE = new Set(['MAIL', 'RCPT', 'RSET']);

type Next = 'continue' | 'close';

export class SmtpSession {
  /** Created once the client leg is ready to be read (after the handshake for implicit TLS). */
  private client!: SmtpChannel;
  private up!: UpstreamLeg;
  private serverLeg!: ServerLeg;
  private readonly clientAddress: string;
  private readonly server: string;
  /** The client completed STARTTLS and has not yet said EHLO again (RFC 3207 §4.2). */
  private needEhlo = false;
  /** The transaction the server has accepted MAIL (and RCPTs) for; null outside one. */
  private envelope: Envelope | null = null;
  private authenticated = false;
  /** A message being received by BDAT, between its first chunk and its LAST. */
  private chunked: ChunkedMessage | null = null;
  /** A command read past the end of a group, to be handled next. */
  private pushedBack: ReaderEvent | null = null;
  private errors = 0;
  private idle = false;
  private messages = 0;

  constructor(
    private readonly ctx: SmtpContext,
    private readonly socket: Socket,
  ) {
    this.clientAddress = socket.remoteAddress
      ? formatHostPort(socket.remoteAddress, socket.remotePort ?? 0)
      : 'client';
    this.server = formatHostPort(ctx.target.host, ctx.target.port);
  }

  private channel(stream: Socket | TLSSocket): SmtpChannel {
    return new SmtpChannel(stream, `client ${this.clientAddress}`, this.ctx.cfg.maxCommandLength);
  }

  private get log() {
    return this.ctx.log;
  }

  async run(): Promise<void> {
    const socket = this.socket;
    try {
      this.up = await openUpstream(this.ctx.target, this.ctx.cfg, this.ctx.deps.tls, this.ctx.hostname);
    } catch (e) {
      await this.unreachable(socket, e as Error);
      return;
    }
    this.serverLeg = new ServerLeg(this.up.channel);
    if (this.up.injected > 0)
      this.log.warn(
        { server: this.server, bytes: this.up.injected },
        'server sent bytes after its STARTTLS 220: discarded',
      );
    const onShutdown = () => {
      if (this.idle) void this.closeWith(reply(421, `4.3.2 ${this.ctx.hostname} Service shutting down`));
    };
    this.ctx.shutdown.addEventListener('abort', onShutdown, { once: true });
    try {
      if (this.ctx.cfg.tls.client === 'implicit') {
        let tls: TLSSocket;
        try {
          tls = await acceptImplicitTls(this.ctx, socket, this.up.certificate);
        } catch (e) {
          this.tlsFailed((e as Error).message);
          socket.destroy();
          this.up.channel.destroy();
          return;
        }
        this.client = this.channel(tls);
      } else this.client = this.channel(socket);
      await this.client.sendReply(this.up.greeting);
      await this.loop();
    } catch (e) {
      if (e instanceof UpstreamLost) {
        this.log.warn(
          { client: this.clientAddress, server: this.server, err: e.message },
          'smtp: server leg failed',
        );
        await this.closeWith(
          reply(421, `4.4.2 ${this.ctx.hostname} connection to the mail server lost; try again later`),
        );
      } else {
        this.log.debug({ client: this.clientAddress, err: (e as Error).message }, 'smtp: client leg ended');
        this.client?.destroy();
        socket.destroy();
        this.quitUpstream();
      }
    } finally {
      this.ctx.shutdown.removeEventListener('abort', onShutdown);
      this.dropChunked();
    }
  }

  /** Upstream down: RST (the default, like a refused connection) or a 421 greeting. */
  private async unreachable(socket: Socket, e: Error): Promise<void> {
    const code = (e as ScangateError).code ?? 'ERR_UPSTREAM';
    this.log.warn(
      { client: this.clientAddress, server: this.server, code, err: e.message },
      'smtp: server unreachable',
    );
    this.emit({ kind: 'upstream-failure', action: 'blocked', reason: e.message });
    await refuseClient(this.ctx, socket, (s) => this.channel(s));
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.idle = true;
      const pushed = this.pushedBack;
      this.pushedBack = null;
      const ev =
        pushed ??
        (await this.client.next(this.ctx.cfg.idleTimeout).catch((e) => {
          if ((e as ScangateError).code === 'ERR_SMTP_TIMEOUT') return 'timeout' as const;
          throw e;
        }));
      this.idle = false;
      // Replies to the commands the client pipelined go out together; a lockstep client loses
      // nothing, as the channel sends what it holds as soon as it waits for the client again.
      this.client.hold();
      if (ev === 'timeout') {
        await this.closeWith(reply(421, `4.4.2 ${this.ctx.hostname} Error: timeout exceeded`));
        return;
      }
      if (!ev) {
        this.quitUpstream();
        this.client.end();
        return;
      }
      if (this.ctx.shutdown.aborted) {
        await this.closeWith(reply(421, `4.3.2 ${this.ctx.hostname} Service shutting down`));
        return;
      }
      let next: Next;
      if (ev.type === 'overlong') {
        next = await this.error(reply(500, '5.5.2 Line too long'));
      } else if (ev.type !== 'line') {
        next = await this.error(reply(500, '5.5.2 Syntax error'));
      } else if (ev.bareLf) {
        // RFC 5321 §2.3.8: only CRLF ends a line. Answer rather than guess (SMTP smuggling).
        next = await this.error(
          reply(500, '5.5.2 Syntax error: bare <LF> received; lines must end with <CR><LF>'),
        );
      } else {
        const parsed = parseCommand(ev.line);
        next = parsed.ok
          ? await this.command(parsed.command)
          : await this.error(reply(500, `5.5.2 Syntax error: ${parsed.reason}`));
      }
      if (next === 'close') return;
    }
  }

  private async error(r: Reply): Promise<Next> {
    this.errors++;
    if (this.errors >= MAX_ERRORS) {
      await this.closeWith(reply(421, `4.7.0 ${this.ctx.hostname} Error: too many errors`));
      return 'close';
    }
    await this.client.sendReply(r);
    return 'continue';
  }

  private async command(cmd: SmtpCommand): Promise<Next> {
    this.log.trace({ client: this.clientAddress, command: redactCommand(cmd) }, 'smtp command');
    if (REFUSED_VERBS.has(cmd.verb)) return this.error(reply(502, '5.5.1 Command not implemented'));
    if (cmd.verb === 'BDAT') return this.bdat(cmd);
    if (this.chunked) {
      // RFC 3030 §2: between chunks only more BDAT; RSET (and a new EHLO, QUIT) abandon the message.
      if (CHUNK_ENDERS.has(cmd.verb)) this.dropChunked();
      else if (cmd.verb !== 'NOOP') return this.error(reply(503, '5.5.1 BDAT transfer in progress'));
    }
    if (this.needEhlo && ['MAIL', 'RCPT', 'DATA', 'AUTH', 'VRFY', 'EXPN'].includes(cmd.verb))
      return this.error(reply(503, '5.5.1 Send EHLO/HELO first (TLS was started)'));
    switch (cmd.verb) {
      case 'EHLO':
      case 'HELO':
        return this.hello(cmd);
      case 'STARTTLS':
        return this.startTls(cmd);
      case 'AUTH':
        return this.auth(cmd);
      case 'MAIL': {
        const size = declaredSize(cmd.arg);
        if (size !== null && size > this.ctx.cfg.maxMessageSize)
          return this.error(reply(552, '5.3.4 Message size exceeds fixed maximum message size'));
        return this.forwardGroup(cmd);
      }
      case 'RCPT':
      case 'RSET':
        return this.forwardGroup(cmd);
      case 'DATA':
        return this.data(cmd);
      case 'QUIT': {
        const r = await this.serverLeg.send(cmd.raw);
        await this.client.sendReply(r);
        this.client.end();
        this.up.channel.end();
        return 'close';
      }
      default:
        return this.forward(cmd);
    }
  }

  /** Forwards a command and hands the server's reply back unchanged. */
  private async forward(cmd: SmtpCommand, timeoutMs: number = REPLY_TIMEOUTS.command): Promise<Next> {
    return this.answer(await this.serverLeg.send(cmd.raw, timeoutMs));
  }

  /** Would `cmd`, read right after a group member, be forwarded as it is (no local answer)? */
  private groupable(cmd: SmtpCommand): boolean {
    if (!GROUPABLE.has(cmd.verb) || this.needEhlo) return false;
    const size = cmd.verb === 'MAIL' ? declaredSize(cmd.arg) : null;
    return size === null || size <= this.ctx.cfg.maxMessageSize;
  }

  /**
   * MAIL, RCPT, RSET — and, when the server offered PIPELINING, every such command the client has
   * already pipelined behind it (RFC 2920 §3.1) — sent to the server in one write; the replies are
   * then read and passed on one by one, in order, each as the server gave it. The first command of
   * another kind ends the group and is handled next. Nothing here is answered before the server
   * answered it.
   */
  private async forwardGroup(first: SmtpCommand): Promise<Next> {
    const group = [first];
    while (this.serverLeg.offers.has('PIPELINING')) {
      const ev = this.client.poll();
      if (!ev) break;
      const parsed = ev.type === 'line' && !ev.bareLf ? parseCommand(ev.line) : null;
      if (parsed?.ok && this.groupable(parsed.command)) {
        this.log.trace(
          { client: this.clientAddress, command: redactCommand(parsed.command) },
          'smtp command',
        );
        group.push(parsed.command);
        continue;
      }
      this.pushedBack = ev;
      break;
    }
    await this.serverLeg.sendGroup(group.map((c) => c.raw));
    for (const cmd of group) {
      const r = await this.serverLeg.reply();
      const ok = r.code >= 200 && r.code < 300;
      if (cmd.verb === 'RSET') this.envelope = null;
      else if (cmd.verb === 'MAIL' && ok) this.envelope = { mailFrom: pathOf(cmd.arg), recipients: [] };
      else if (cmd.verb === 'RCPT' && ok) this.envelope?.recipients.push(pathOf(cmd.arg));
      if ((await this.answer(r)) === 'close') return 'close';
    }
    return 'continue';
  }

  /** Sends a server reply to the client; a 421 ends the session (RFC 5321 §3.8). */
  private async answer(r: Reply): Promise<Next> {
    if (r.code >= 500) this.errors++;
    else if (r.code < 400) this.errors = 0;
    if (r.code === 421) {
      await this.closeWith(r);
      return 'close';
    }
    await this.client.sendReply(r);
    return 'continue';
  }

  private async hello(cmd: SmtpCommand): Promise<Next> {
    let r = await this.serverLeg.send(cmd.raw);
    if (r.code === 250) {
      this.needEhlo = false;
      this.envelope = null;
      this.serverLeg.offers = cmd.verb === 'EHLO' ? ehloKeywords(r) : new Set();
      if (cmd.verb === 'EHLO')
        r = rewriteEhlo(r, {
          offerStartTls: this.ctx.cfg.tls.client === 'starttls' && !this.client.encrypted,
          allowAuth: this.authAllowed(),
          maxMessageSize: this.ctx.cfg.maxMessageSize,
          offerChunking: true,
        });
    }
    return this.answer(r);
  }

  /** Credentials may cross the client leg only encrypted, unless the listener has no client TLS. */
  private authAllowed(): boolean {
    return this.client.encrypted || this.ctx.cfg.tls.client === 'none';
  }

  private async startTls(cmd: SmtpCommand): Promise<Next> {
    if (this.ctx.cfg.tls.client !== 'starttls')
      return this.error(reply(502, '5.5.1 Command not implemented'));
    if (this.client.encrypted) return this.error(reply(503, '5.5.1 TLS already active'));
    if (cmd.arg.trim()) return this.error(reply(501, '5.5.4 Syntax error (no parameters allowed)'));
    const result = await startClientTls(this.ctx, this.client, this.up.certificate);
    if ('dropped' in result && result.dropped > 0)
      this.log.warn(
        { client: this.clientAddress, bytes: result.dropped },
        'client pipelined bytes after STARTTLS: discarded (CVE-2011-0411 class)',
      );
    if (!result.ok) {
      if (result.refuse) {
        this.log.error({ err: result.reason }, 'smtp: no certificate for the client leg');
        await this.closeWith(result.refuse);
      } else {
        this.tlsFailed(result.reason);
        this.fail();
      }
      return 'close';
    }
    // RFC 3207 §4.2: everything learned before TLS is forgotten; the client must EHLO again.
    this.needEhlo = true;
    this.envelope = null;
    return 'continue';
  }

  private async auth(cmd: SmtpCommand): Promise<Next> {
    if (!this.authAllowed())
      return this.error(reply(538, '5.7.11 Encryption required for requested authentication mechanism'));
    const result = await relayAuth(cmd, this.client, this.serverLeg, this.ctx.cfg.idleTimeout);
    if (result.kind === 'toolong') {
      if (result.serverReply.code === 421) return this.answer(result.serverReply);
      return this.error(reply(500, '5.5.6 Authentication Exchange line is too long'));
    }
    const r = result.reply;
    this.log.info(
      { client: this.clientAddress, mechanism: cmd.arg.split(' ')[0], result: r.code },
      'smtp: AUTH',
    );
    if (r.code === 235) this.authenticated = true;
    if (r.code >= 500) this.emit({ kind: 'auth-failure', action: 'blocked', reason: replySummary(r) });
    return this.answer(r);
  }

  private async data(cmd: SmtpCommand): Promise<Next> {
    if (cmd.arg.trim()) return this.error(reply(501, '5.5.4 Syntax error (DATA takes no parameters)'));
    const envelope = this.envelope;
    if (envelope === null || envelope.recipients.length === 0) {
      // Nothing the server would accept: let it say so in its own words.
      const r = await this.serverLeg.send('DATA', REPLY_TIMEOUTS.dataInit);
      if (r.code === 354) {
        // A server that opens DATA without a recipient: close it empty and refuse ourselves.
        const end = await this.serverLeg.send('.', REPLY_TIMEOUTS.dataTermination);
        if (end.code === 421) return this.answer(end);
        return this.error(reply(554, '5.5.1 Error: no valid recipients'));
      }
      return this.answer(r);
    }
    await this.client.sendReply(reply(354, 'End data with <CR><LF>.<CR><LF>'));
    // RFC 5321 §4.1.1.4: the transaction ends with the end of data, whatever the outcome.
    this.envelope = null;
    return this.finishMessage(envelope);
  }

  /**
   * BDAT (RFC 3030): every announced octet is read whatever the answer, so the stream stays in
   * step. Non-last chunks are answered here; `LAST` ends the message like DATA's final dot.
   */
  private async bdat(cmd: SmtpCommand): Promise<Next> {
    const chunk = parseBdat(cmd.arg);
    if (!chunk) {
      // Where the chunk ends is unknown, so nothing after it can be read as commands.
      await this.closeWith(reply(501, '5.5.4 Syntax: BDAT count [LAST]; closing connection'));
      return 'close';
    }
    let refusal: Reply | null = null;
    if (this.needEhlo) refusal = reply(503, '5.5.1 Send EHLO/HELO first (TLS was started)');
    else if (!this.chunked && (this.envelope === null || this.envelope.recipients.length === 0))
      refusal = reply(503, '5.5.1 Error: need MAIL and an accepted RCPT before BDAT');
    if (refusal) {
      if (!(await discardChunk(this.client, chunk.size, this.ctx.cfg.idleTimeout))) return this.vanished();
      return this.error(refusal);
    }
    if (!this.chunked) {
      this.chunked = new ChunkedMessage(this.envelope!, this.ctx);
      this.envelope = null;
    }
    const message = this.chunked;
    if (!(await message.receive(this.client, this.serverLeg, chunk.size))) return this.vanished();
    if (!chunk.last) {
      await this.client.sendReply(reply(250, `2.0.0 ${chunk.size} octets received`));
      return 'continue';
    }
    this.chunked = null;
    return this.finishMessage(message.envelope, message);
  }

  /** A BDAT transfer is abandoned (RSET, a new EHLO, QUIT, the end of the session). */
  private dropChunked(): void {
    void this.chunked?.dispose().catch(() => {});
    this.chunked = null;
  }

  /** The client went away in the middle of a message. */
  private vanished(): Next {
    this.serverLeg.quit();
    this.client.destroy();
    return 'close';
  }

  /** Judges and delivers one received message (transaction.ts) and answers the client. */
  private async finishMessage(envelope: Envelope, chunked?: ChunkedMessage): Promise<Next> {
    this.messages++;
    const result = await transferMessage(
      {
        ctx: this.ctx,
        client: this.client,
        server: this.serverLeg,
        clientAddress: this.clientAddress,
        serverAddress: this.server,
        authenticated: this.authenticated,
        number: this.messages,
        emit: (e) => this.emit(e),
      },
      envelope,
      chunked,
    );
    switch (result.kind) {
      case 'closed':
        return this.vanished();
      case 'error':
        return this.error(result.reply);
      case 'local':
        await this.client.sendReply(result.reply);
        return 'continue';
      case 'server':
        return this.answer(result.reply);
    }
  }

  /** Sends a last reply to the client and closes both legs. */
  private async closeWith(r: Reply): Promise<void> {
    try {
      await this.client.sendReply(r);
    } catch {
      // already gone
    }
    this.client.end();
    this.quitUpstream();
  }

  private quitUpstream(): void {
    this.serverLeg?.quit();
  }

  private fail(): void {
    this.client.destroy();
    this.up?.channel.destroy();
  }

  private tlsFailed(reason: string): void {
    this.log.info({ client: this.clientAddress, err: reason }, 'smtp: client TLS handshake failed');
    this.emit({ kind: 'tls-failure', action: 'error', reason });
  }

  private emit(e: Omit<SecurityEvent, 'listener' | 'protocol' | 'client' | 'server'>): void {
    this.ctx.deps.events.emit({
      listener: this.ctx.cfg.name,
      protocol: 'smtp',
      client: this.clientAddress,
      server: this.server,
      ...e,
    });
  }
}
