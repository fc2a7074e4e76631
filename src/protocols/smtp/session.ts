/**
 * One relayed SMTP connection: a before-queue, lockstep relay between a client and the real server.
 *
 * - Upstream first: the client hears nothing (no 220, no TLS ServerHello) until the server has
 *   greeted us; a server that cannot be reached is mirrored as a reset (or a 421, by config).
 * - Commands and replies pass one at a time in order, so the server's own answers — RCPT refusals,
 *   AUTH results, 421 — reach the client as the server gave them, and pipelined commands (RFC 2920)
 *   are answered in order.
 * - DATA is received and spooled completely, scanned, and only then offered to the server
 *   (Postfix's `speed_adjust` shape): a refused message never starts a DATA transaction upstream,
 *   so the connection survives for the next message, and the client's 250 is always the server's
 *   own 250 for that message.
 */

import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { SecurityEvent } from '../../admin/events.js';
import { observeTls } from '../../admin/metrics.js';
import { ScangateError } from '../../errors.js';
import { formatHostPort } from '../../net/connect.js';
import { resetConnection } from '../../net/splice.js';
import { withTimeout } from '../../net/timeouts.js';
import { PeerClosedError, SmtpChannel } from './channel.js';
import { declaredSize, parseCommand, redactCommand, type SmtpCommand } from './command.js';
import type { SmtpContext } from './context.js';
import { DotStuffer } from './dot.js';
import { rewriteEhlo } from './ehlo.js';
import { judgeMessage } from './message.js';
import { type Reply, reply, replySummary } from './reply.js';
import { MessageSpool } from './spool.js';
import { REPLY_TIMEOUTS, UPSTREAM_KEEPALIVE_MS } from './timeouts.js';
import { openUpstream, type UpstreamLeg } from './upstream.js';

/** RFC 4954 §4: an AUTH exchange line may be 12288 octets. */
const MAX_AUTH_LINE = 12_288;
/** Consecutive errors after which the client is dropped (Postfix smtpd_hard_error_limit). */
const MAX_ERRORS = 20;
/** Commands the relay never forwards: they would let a client speak for the relay, or reverse roles. */
const REFUSED_VERBS = new Set(['XCLIENT', 'XFORWARD', 'TURN', 'ATRN', 'XEXCH50', 'BDAT']);

/** The server leg failed (closed, timed out, sent garbage): the client gets a 421. */
class UpstreamLost extends ScangateError {
  constructor(cause: unknown) {
    super('ERR_SMTP_UPSTREAM_LOST', `mail server connection lost: ${(cause as Error)?.message ?? cause}`, {
      cause,
    });
  }
}

type Next = 'continue' | 'close';

export class SmtpSession {
  /** Created once the client leg is ready to be read (after the handshake for implicit TLS). */
  private client!: SmtpChannel;
  private up!: UpstreamLeg;
  private readonly clientAddress: string;
  private readonly server: string;
  /** The client completed STARTTLS and has not yet said EHLO again (RFC 3207 §4.2). */
  private needEhlo = false;
  private mailFrom: string | null = null;
  private recipients = 0;
  private errors = 0;
  private idle = false;
  private lastUpstreamUse = Date.now();
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

  /**
   * Implicit TLS: the ClientHello is already waiting, unread, in the socket (nothing has read from
   * it); TLSSocket takes over the socket with whatever it has buffered.
   */
  private async implicitTls(): Promise<TLSSocket> {
    const context = await this.ctx.clientContext(this.up?.certificate ?? null);
    const tls = new TLSSocket(this.socket, { isServer: true, secureContext: context });
    tls.on('error', () => {});
    await observeTls(
      this.ctx.cfg.name,
      'client',
      withTimeout(handshake(tls), this.ctx.cfg.headerTimeout, () => new Error('TLS handshake timeout')),
    );
    return tls;
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
          tls = await this.implicitTls();
        } catch (e) {
          this.log.info(
            { client: this.clientAddress, err: (e as Error).message },
            'smtp: client TLS handshake failed',
          );
          this.emit({ kind: 'tls-failure', action: 'error', reason: (e as Error).message });
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
    if (this.ctx.cfg.unreachable !== '421') {
      resetConnection(socket);
      return;
    }
    try {
      this.client = this.channel(this.ctx.cfg.tls.client === 'implicit' ? await this.implicitTls() : socket);
      await this.client.sendReply(
        reply(421, `4.4.1 ${this.ctx.hostname} mail server not available; try again later`),
      );
      this.client.end();
    } catch {
      // The client went away or failed its handshake; nothing more to tell it.
      socket.destroy();
    }
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.idle = true;
      const ev = await this.client.next(this.ctx.cfg.idleTimeout).catch((e) => {
        if ((e as ScangateError).code === 'ERR_SMTP_TIMEOUT') return 'timeout' as const;
        throw e;
      });
      this.idle = false;
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
      case 'MAIL':
        return this.mail(cmd);
      case 'DATA':
        return this.data(cmd);
      case 'RSET': {
        this.resetTransaction();
        return this.forward(cmd);
      }
      case 'QUIT': {
        const r = await this.relay(cmd);
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
    const r = await this.relay(cmd, timeoutMs);
    if (cmd.verb === 'RCPT' && r.code >= 200 && r.code < 300) this.recipients++;
    return this.answer(r);
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

  private async relay(cmd: SmtpCommand, timeoutMs: number = REPLY_TIMEOUTS.command): Promise<Reply> {
    return this.upstream(async () => {
      await this.up.channel.write(`${cmd.raw}\r\n`);
      return this.up.channel.readReply(timeoutMs);
    });
  }

  /** Runs an operation on the server leg; any failure there becomes UpstreamLost. */
  private async upstream<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const v = await fn();
      this.lastUpstreamUse = Date.now();
      return v;
    } catch (e) {
      throw new UpstreamLost(e);
    }
  }

  private async hello(cmd: SmtpCommand): Promise<Next> {
    let r = await this.relay(cmd);
    if (r.code === 250) {
      this.needEhlo = false;
      this.resetTransaction();
      if (cmd.verb === 'EHLO')
        r = rewriteEhlo(r, {
          offerStartTls: this.ctx.cfg.tls.client === 'starttls' && !this.client.encrypted,
          allowAuth: this.authAllowed(),
          maxMessageSize: this.ctx.cfg.maxMessageSize,
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
    const ok = await this.startClientTls(reply(220, '2.0.0 Ready to start TLS'));
    if (!ok) return 'close';
    // RFC 3207 §4.2: everything learned before TLS is forgotten; the client must EHLO again.
    this.needEhlo = true;
    this.resetTransaction();
    return 'continue';
  }

  /**
   * TLS on the client leg after STARTTLS (`ready` is the 220, written just before the socket is
   * wrapped). Bytes the client pipelined in plaintext are dropped.
   */
  private async startClientTls(ready: Reply): Promise<boolean> {
    let context: SecureContext;
    try {
      context = await this.ctx.clientContext(this.up.certificate);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'smtp: no certificate for the client leg');
      await this.closeWith(reply(454, '4.7.0 TLS not available due to temporary reason'));
      return false;
    }
    void this.client.sendReply(ready).catch(() => {});
    const { tls, dropped } = this.client.upgrade(
      (raw) => new TLSSocket(raw, { isServer: true, secureContext: context }),
    );
    if (dropped > 0)
      this.log.warn(
        { client: this.clientAddress, bytes: dropped },
        'client pipelined bytes after STARTTLS: discarded (CVE-2011-0411 class)',
      );
    try {
      await observeTls(
        this.ctx.cfg.name,
        'client',
        withTimeout(handshake(tls), this.ctx.cfg.headerTimeout, () => new Error('TLS handshake timeout')),
      );
      return true;
    } catch (e) {
      this.log.info(
        { client: this.clientAddress, err: (e as Error).message },
        'smtp: client TLS handshake failed',
      );
      this.emit({ kind: 'tls-failure', action: 'error', reason: (e as Error).message });
      this.fail();
      return false;
    }
  }

  private async auth(cmd: SmtpCommand): Promise<Next> {
    if (!this.authAllowed())
      return this.error(reply(538, '5.7.11 Encryption required for requested authentication mechanism'));
    // Never logged: the initial response and every continuation line are credentials.
    let r = await this.relay(cmd);
    while (r.code === 334) {
      await this.client.sendReply(r);
      const saved = this.client.reader.maxLine;
      this.client.reader.maxLine = MAX_AUTH_LINE;
      const ev = await this.client.next(this.ctx.cfg.idleTimeout).finally(() => {
        this.client.reader.maxLine = saved;
      });
      if (!ev) throw new PeerClosedError('client');
      if (ev.type !== 'line') {
        // RFC 4954 §4: cancel the exchange with the server, tell the client its line was too long.
        r = await this.upstream(async () => {
          await this.up.channel.write('*\r\n');
          return this.up.channel.readReply(REPLY_TIMEOUTS.command);
        });
        if (r.code === 421) return this.answer(r);
        return this.error(reply(500, '5.5.6 Authentication Exchange line is too long'));
      }
      const line = ev.line;
      r = await this.upstream(async () => {
        await this.up.channel.write(Buffer.concat([line, Buffer.from('\r\n')]));
        return this.up.channel.readReply(REPLY_TIMEOUTS.command);
      });
    }
    this.log.info(
      { client: this.clientAddress, mechanism: cmd.arg.split(' ')[0], result: r.code },
      'smtp: AUTH',
    );
    if (r.code >= 500) this.emit({ kind: 'auth-failure', action: 'blocked', reason: replySummary(r) });
    return this.answer(r);
  }

  private async mail(cmd: SmtpCommand): Promise<Next> {
    const size = declaredSize(cmd.arg);
    if (size !== null && size > this.ctx.cfg.maxMessageSize)
      return this.error(reply(552, '5.3.4 Message size exceeds fixed maximum message size'));
    const r = await this.relay(cmd);
    if (r.code >= 200 && r.code < 300) {
      this.mailFrom = cmd.arg.slice(5).split(' ')[0] ?? '';
      this.recipients = 0;
    }
    return this.answer(r);
  }

  private resetTransaction(): void {
    this.mailFrom = null;
    this.recipients = 0;
  }

  private async data(cmd: SmtpCommand): Promise<Next> {
    if (cmd.arg.trim()) return this.error(reply(501, '5.5.4 Syntax error (DATA takes no parameters)'));
    if (this.mailFrom === null || this.recipients === 0) {
      // Nothing the server would accept: let it say so in its own words.
      const r = await this.relay(cmd, REPLY_TIMEOUTS.dataInit);
      if (r.code === 354) {
        // A server that opens DATA without a recipient: close it empty and refuse ourselves.
        const end = await this.upstream(async () => {
          await this.up.channel.write('.\r\n');
          return this.up.channel.readReply(REPLY_TIMEOUTS.dataTermination);
        });
        if (end.code === 421) return this.answer(end);
        return this.error(reply(554, '5.5.1 Error: no valid recipients'));
      }
      return this.answer(r);
    }
    await this.client.sendReply(reply(354, 'End data with <CR><LF>.<CR><LF>'));
    const started = Date.now();
    const spool = new MessageSpool(this.ctx.spoolDir, this.ctx.cfg.spoolMemory);
    try {
      const received = await this.receive(spool);
      if (received === 'closed') {
        this.quitUpstream();
        this.client.destroy();
        return 'close';
      }
      if (received === 'toobig') {
        await this.rsetUpstream();
        this.resetTransaction();
        return this.error(reply(552, '5.3.4 Message size exceeds fixed maximum message size'));
      }
      let source: Awaited<ReturnType<MessageSpool['finish']>>;
      let decision: Awaited<ReturnType<typeof judgeMessage>>;
      try {
        source = await spool.finish();
        decision = await judgeMessage(source, {
          scanner: this.ctx.deps.scanner,
          policy: this.ctx.cfg.onInfected,
          onError: this.ctx.deps.config.engine.onError,
          spoolDir: this.ctx.spoolDir,
          spoolMemory: this.ctx.cfg.spoolMemory,
        });
      } catch (e) {
        // A local failure (spool disk full, …): the sender keeps the message and retries.
        this.log.error(
          { client: this.clientAddress, err: (e as Error).message },
          'smtp: message not processed',
        );
        await this.rsetUpstream();
        this.resetTransaction();
        await this.client.sendReply(reply(451, '4.3.0 Local error in processing; try again later'));
        return 'continue';
      }
      const from = this.mailFrom;
      const recipients = this.recipients;
      this.resetTransaction();
      this.messages++;
      const base = { from, recipients, size: source.size, ms: 0 };
      if (decision.action === 'refuse') {
        this.emit({
          kind: 'verdict',
          action: decision.eventAction,
          object: `message ${this.messages} from ${from}`,
          ...(decision.verdict.status === 'infected'
            ? { signature: decision.verdict.signature, location: decision.verdict.location }
            : {}),
          reason: decision.reason,
        });
        await this.rsetUpstream();
        base.ms = Date.now() - started;
        this.log.info(
          { ...base, client: this.clientAddress, reply: replySummary(decision.reply) },
          'smtp: message refused',
        );
        await this.client.sendReply(decision.reply);
        return 'continue';
      }
      try {
        if (decision.eventAction)
          this.emit({
            kind: 'verdict',
            action: decision.eventAction,
            object: `message ${this.messages} from ${from}`,
            ...(decision.verdict.status === 'infected'
              ? { signature: decision.verdict.signature, location: decision.verdict.location }
              : { reason: decision.verdict.status === 'error' ? decision.verdict.reason : undefined }),
          });
        const r = await this.deliver(decision.prefix, decision.source);
        base.ms = Date.now() - started;
        this.log.info(
          { ...base, client: this.clientAddress, verdict: decision.verdict.status, reply: replySummary(r) },
          'smtp: message relayed',
        );
        return this.answer(r);
      } finally {
        await decision.dispose();
      }
    } finally {
      await spool.dispose();
    }
  }

  /** Reads the client's message into the spool (bounded by maxMessageSize). */
  private async receive(spool: MessageSpool): Promise<'ok' | 'toobig' | 'closed'> {
    const max = this.ctx.cfg.maxMessageSize;
    this.client.reader.startData();
    let size = 0;
    let tooBig = false;
    for (;;) {
      const ev = await this.client.next(this.ctx.cfg.idleTimeout);
      if (!ev) return 'closed';
      if (ev.type === 'end') break;
      if (ev.type !== 'data') continue;
      size += ev.chunk.length;
      if (size > max) tooBig = true;
      // Past the limit the rest is read and dropped: the client must reach its "." to hear the 552.
      if (!tooBig) await spool.write(ev.chunk);
      if (Date.now() - this.lastUpstreamUse > UPSTREAM_KEEPALIVE_MS) await this.noopUpstream();
    }
    return tooBig ? 'toobig' : 'ok';
  }

  /** Offers the message to the server: DATA, the content dot-stuffed, and the server's final reply. */
  private async deliver(prefix: Buffer, source: { stream(): AsyncIterable<Buffer> }): Promise<Reply> {
    const go = await this.upstream(async () => {
      await this.up.channel.write('DATA\r\n');
      return this.up.channel.readReply(REPLY_TIMEOUTS.dataInit);
    });
    // The server's refusal of DATA (452, 554, …) is the answer to the client's message, unchanged.
    if (go.code !== 354) return go;
    return this.upstream(async () => {
      const stuffer = new DotStuffer();
      const ch = this.up.channel;
      await ch.write(stuffer.write(prefix));
      for await (const chunk of source.stream())
        await withTimeout(
          ch.write(stuffer.write(chunk)),
          REPLY_TIMEOUTS.dataBlock,
          () => new Error('data block not taken in time'),
        );
      await ch.write(stuffer.end());
      // If the server closes now, this throws: the client never gets a 250 that was not given.
      return ch.readReply(REPLY_TIMEOUTS.dataTermination);
    });
  }

  private async rsetUpstream(): Promise<void> {
    const r = await this.upstream(async () => {
      await this.up.channel.write('RSET\r\n');
      return this.up.channel.readReply(REPLY_TIMEOUTS.command);
    });
    if (r.code === 421) throw new UpstreamLost(new Error(replySummary(r)));
  }

  private async noopUpstream(): Promise<void> {
    const r = await this.upstream(async () => {
      await this.up.channel.write('NOOP\r\n');
      return this.up.channel.readReply(REPLY_TIMEOUTS.command);
    });
    if (r.code === 421) throw new UpstreamLost(new Error(replySummary(r)));
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
    const ch = this.up?.channel;
    if (!ch) return;
    try {
      if (!ch.closed) void ch.write('QUIT\r\n').catch(() => {});
    } catch {
      // ignore
    }
    ch.end();
  }

  private fail(): void {
    this.client.destroy();
    this.up?.channel.destroy();
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

function handshake(tls: TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    const onSecure = () => {
      tls.off('error', onError);
      tls.off('close', onClose);
      resolve();
    };
    const onError = (e: Error) => {
      tls.off('secure', onSecure);
      tls.off('close', onClose);
      reject(e);
    };
    const onClose = () => {
      tls.off('secure', onSecure);
      tls.off('error', onError);
      reject(new Error('client closed during the TLS handshake'));
    };
    tls.once('secure', onSecure);
    tls.once('error', onError);
    tls.once('close', onClose);
  });
}
