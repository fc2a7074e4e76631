/**
 * One relayed FTP control connection: a lockstep relay between a client and the real server.
 *
 * - Upstream first: the client hears nothing (no 220, no TLS ServerHello for implicit FTPS) until the
 *   server has greeted the gateway and the server leg's TLS is up; a server that cannot be reached
 *   is mirrored as a reset (or a 421, by config).
 * - TLS per leg: the client leg's AUTH TLS / PBSZ / PROT are answered by the gateway (RFC 4217),
 *   the server leg negotiated its own at connect time.
 * - Data connections are the gateway's: PASV/EPSV/PORT/EPRT from the client are answered locally
 *   (addresses in the replies are the gateway's), the server leg uses its own mode, and every
 *   transfer is spooled and judged in between (transfer.ts).
 * - Everything else passes one command, one reply at a time, so the server's own answers reach the
 *   client unchanged.
 */

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { SecurityEvent } from '../../admin/events.js';
import { observeTls } from '../../admin/metrics.js';
import { ScangateError } from '../../errors.js';
import { formatHostPort } from '../../net/connect.js';
import { resetConnection } from '../../net/splice.js';
import { withTimeout } from '../../net/timeouts.js';
import { SmtpChannel } from '../smtp/channel.js';
import type { ReaderEvent } from '../smtp/reader.js';
import { plainAddress } from './address.js';
import { ClientDataSetup } from './client-data.js';
import { type FtpCommand, parseCommand, redactCommand } from './command.js';
import type { FtpContext } from './context.js';
import { rewriteFeat } from './feat.js';
import { type FtpReply, formatReply, reply } from './reply.js';
import { download, type TransferHost } from './transfer.js';
import { upload } from './upload.js';
import { ServerLeg } from './upstream.js';

/** Consecutive errors after which the client is dropped. */
const MAX_ERRORS = 20;
/** setTimeout's ceiling: reads of the client control are bounded by the idle race instead. */
const FOREVER = 2 ** 31 - 1;
/** Security extensions the gateway does not relay (they would be about the server leg's TLS). */
const REFUSED = new Set(['CCC', 'ADAT', 'CONF', 'ENC', 'MIC', 'LPRT', 'LPSV']);
const DOWNLOADS = new Map([
  ['RETR', true],
  ['LIST', false],
  ['NLST', false],
  ['MLSD', false],
]);
const UPLOADS = new Set(['STOR', 'APPE', 'STOU']);

class UpstreamLost extends ScangateError {
  constructor(cause: unknown) {
    super('ERR_FTP_UPSTREAM_LOST', `FTP server connection lost: ${(cause as Error)?.message ?? cause}`, {
      cause,
    });
  }
}

export class FtpSession implements TransferHost {
  private client!: SmtpChannel;
  server!: ServerLeg;
  private context: SecureContext | null = null;
  private readonly clientAddress: string;
  private readonly serverName: string;
  /** The control connection's addresses (read once: a TLS wrap takes over the socket's handle). */
  private readonly local: string;
  private readonly remote: string;
  private pbsz = false;
  private prot: 'C' | 'P' = 'C';
  private readonly dataSetup: ClientDataSetup;
  /** The offset of a REST the server accepted for the next transfer (0: none). */
  private restOffset = 0;
  private errors = 0;
  private pendingEvent: Promise<ReaderEvent | null> | null = null;
  readonly cutFiles = new Set<string>();

  constructor(
    readonly ctx: FtpContext,
    private readonly socket: Socket,
  ) {
    this.clientAddress = socket.remoteAddress
      ? formatHostPort(socket.remoteAddress, socket.remotePort ?? 0)
      : 'client';
    this.serverName = formatHostPort(ctx.target.host, ctx.target.port);
    this.local = plainAddress(socket.localAddress ?? '127.0.0.1');
    this.remote = plainAddress(socket.remoteAddress ?? '');
    this.dataSetup = new ClientDataSetup({
      ctx,
      local: this.local,
      remote: this.remote,
      emit: (e) => this.emit(e),
    });
  }

  private get log() {
    return this.ctx.log;
  }

  private channel(stream: Socket | TLSSocket): SmtpChannel {
    return new SmtpChannel(stream, `client ${this.clientAddress}`, this.ctx.cfg.maxCommandLength);
  }

  private async clientTlsContext(): Promise<SecureContext> {
    this.context ??= await this.ctx.clientContext(this.server?.certificate ?? null);
    return this.context;
  }

  private async implicitTls(): Promise<TLSSocket> {
    const tls = new TLSSocket(this.socket, { isServer: true, secureContext: await this.clientTlsContext() });
    tls.on('error', () => {});
    await withTimeout(
      observeTls(this.ctx.cfg.name, 'client', handshake(tls)),
      this.ctx.cfg.headerTimeout,
      () => new Error('TLS handshake timeout'),
    );
    return tls;
  }

  async run(): Promise<void> {
    try {
      this.server = await ServerLeg.open(this.ctx);
    } catch (e) {
      await this.unreachable(e as Error);
      return;
    }
    try {
      if (this.ctx.cfg.tls.client === 'implicit') {
        let tls: TLSSocket;
        try {
          tls = await this.implicitTls();
        } catch (e) {
          this.log.info(
            { client: this.clientAddress, err: (e as Error).message },
            'ftp: client TLS handshake failed',
          );
          this.emit({ kind: 'tls-failure', action: 'error', reason: (e as Error).message });
          this.socket.destroy();
          this.server.channel.destroy();
          return;
        }
        this.client = this.channel(tls);
      } else this.client = this.channel(this.socket);
      await this.say(this.server.greeting);
      if (this.server.greeting.code >= 400) return this.close();
      await this.loop();
    } catch (e) {
      if (e instanceof UpstreamLost) {
        this.log.warn(
          { client: this.clientAddress, server: this.serverName, err: e.message },
          'ftp: server leg failed',
        );
        await this.say(reply(421, 'Service not available, connection to the server lost.')).catch(() => {});
      } else {
        this.log.debug({ client: this.clientAddress, err: (e as Error).message }, 'ftp: client leg ended');
      }
      this.close();
    }
  }

  private async unreachable(e: Error): Promise<void> {
    const code = (e as ScangateError).code ?? 'ERR_UPSTREAM';
    this.log.warn(
      { client: this.clientAddress, server: this.serverName, code, err: e.message },
      'ftp: server unreachable',
    );
    this.emit({ kind: 'upstream-failure', action: 'blocked', reason: e.message });
    if (this.ctx.cfg.unreachable !== '421') {
      resetConnection(this.socket);
      return;
    }
    try {
      this.client = this.channel(
        this.ctx.cfg.tls.client === 'implicit' ? await this.implicitTls() : this.socket,
      );
      await this.say(reply(421, 'Service not available, the FTP server cannot be reached.'));
      this.client.end();
    } catch {
      this.socket.destroy();
    }
  }

  private close(): void {
    this.dataSetup.drop();
    this.client?.end();
    const up = this.server?.channel;
    if (up && !up.closed) void up.write('QUIT\r\n').catch(() => {});
    up?.end();
  }

  /** The next client event; 'timeout' after idleTimeout of silence. */
  private async nextEvent(idleMs: number): Promise<ReaderEvent | null | 'timeout'> {
    this.pendingEvent ??= this.client.next(FOREVER);
    const pending = this.pendingEvent;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), idleMs);
      timer.unref();
    });
    try {
      const ev = await Promise.race([pending, idle]);
      if (ev !== 'timeout') this.pendingEvent = null;
      return ev;
    } catch (e) {
      this.pendingEvent = null;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private async loop(): Promise<void> {
    for (;;) {
      const ev = await this.nextEvent(this.ctx.cfg.idleTimeout);
      if (ev === 'timeout') {
        await this.say(reply(421, 'Timeout.'));
        return this.close();
      }
      if (!ev) return this.close();
      if (this.ctx.shutdown.aborted) {
        await this.say(reply(421, 'Service shutting down.'));
        return this.close();
      }
      let ok: boolean;
      if (ev.type !== 'line') ok = await this.error(reply(500, 'Command line too long.'));
      else {
        const parsed = parseCommand(ev.line);
        ok = parsed.ok
          ? await this.command(parsed.command)
          : await this.error(reply(500, `Syntax error: ${parsed.reason}.`));
      }
      if (!ok) return;
    }
  }

  private async error(r: FtpReply): Promise<boolean> {
    if (++this.errors >= MAX_ERRORS) {
      await this.say(reply(421, 'Too many errors.'));
      this.close();
      return false;
    }
    await this.say(r);
    return true;
  }

  /** Handles one command; false when the session is over. */
  private async command(cmd: FtpCommand): Promise<boolean> {
    this.log.trace({ client: this.clientAddress, command: redactCommand(cmd) }, 'ftp command');
    const v = cmd.verb;
    if (REFUSED.has(v)) return this.error(reply(502, `${v} not implemented.`));
    if ((v === 'USER' || v === 'PASS') && this.ctx.cfg.tls.client === 'explicit' && !this.client.encrypted)
      return this.error(reply(530, 'Use AUTH TLS before sending credentials.'));
    const scan = DOWNLOADS.get(v);
    if (scan !== undefined || UPLOADS.has(v)) {
      if (!this.dataSetup.ready) return this.error(reply(425, 'Use PORT or PASV first.'));
      try {
        if (scan !== undefined) await download(this, cmd, scan, this.restOffset);
        else await upload(this, cmd, this.restOffset);
      } finally {
        this.restOffset = 0;
        this.dataSetup.drop();
      }
      this.errors = 0;
      return true;
    }
    switch (v) {
      case 'AUTH':
        return this.auth(cmd);
      case 'PBSZ':
        if (!this.client.encrypted)
          return this.error(reply(503, 'PBSZ needs a protected control connection.'));
        if (!/^\d{1,10}$/.test(cmd.arg)) return this.error(reply(501, 'PBSZ expects a number.'));
        this.pbsz = true;
        return this.ok(reply(200, 'PBSZ=0'));
      case 'PROT':
        return this.protect(cmd);
      case 'PASV':
      case 'EPSV':
      case 'PORT':
      case 'EPRT': {
        const r = await this.dataSetup.prepare(cmd);
        return r.ok ? this.ok(r.reply) : this.error(r.reply);
      }
      case 'FEAT': {
        const r = await this.upstream(() => this.server.command(cmd.raw));
        return this.relay(rewriteFeat(r, this.ctx.cfg.tls.client));
      }
      case 'REST': {
        const r = await this.upstream(() => this.server.command(cmd.raw));
        if (r.code === 350) this.restOffset = /^\d{1,15}$/.test(cmd.arg.trim()) ? Number(cmd.arg.trim()) : 0;
        return this.relay(r);
      }
      case 'QUIT': {
        const r = await this.upstream(() => this.server.command(cmd.raw)).catch(() => reply(221, 'Goodbye.'));
        await this.say(r);
        this.close();
        return false;
      }
      default:
        return this.relay(await this.upstream(() => this.server.command(cmd.raw)));
    }
  }

  private async ok(r: FtpReply): Promise<boolean> {
    this.errors = 0;
    await this.say(r);
    return true;
  }

  /** A server reply to the client; 421 ends the session (RFC 959 §4.2). */
  private async relay(r: FtpReply): Promise<boolean> {
    if (r.code === 421) {
      await this.say(r);
      this.close();
      return false;
    }
    if (r.code >= 500) return this.error(r);
    return this.ok(r);
  }

  private async auth(cmd: FtpCommand): Promise<boolean> {
    if (this.ctx.cfg.tls.client !== 'explicit')
      return this.error(reply(502, 'AUTH not available on this connection.'));
    if (this.client.encrypted) return this.error(reply(503, 'Already using TLS.'));
    if (!['TLS', 'SSL', 'TLS-C', 'TLS-P'].includes(cmd.arg.trim().toUpperCase()))
      return this.error(reply(504, 'Unknown AUTH type.'));
    let context: SecureContext;
    try {
      context = await this.clientTlsContext();
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'ftp: no certificate for the client leg');
      return this.error(reply(431, 'TLS not available right now.'));
    }
    void this.say(reply(234, 'Proceed with negotiation.')).catch(() => {});
    // Anything pipelined after AUTH in plaintext is dropped (the STARTTLS injection class).
    const { tls, dropped } = this.client.upgrade(
      (raw) => new TLSSocket(raw, { isServer: true, secureContext: context }),
    );
    if (dropped > 0)
      this.log.warn(
        { client: this.clientAddress, bytes: dropped },
        'ftp: client pipelined bytes after AUTH: discarded',
      );
    try {
      await withTimeout(
        observeTls(this.ctx.cfg.name, 'client', handshake(tls)),
        this.ctx.cfg.headerTimeout,
        () => new Error('TLS handshake timeout'),
      );
    } catch (e) {
      this.log.info(
        { client: this.clientAddress, err: (e as Error).message },
        'ftp: client TLS handshake failed',
      );
      this.emit({ kind: 'tls-failure', action: 'error', reason: (e as Error).message });
      this.close();
      return false;
    }
    // RFC 4217 §9: a new AUTH resets the data protection to Clear.
    this.pbsz = false;
    this.prot = 'C';
    return true;
  }

  private async protect(cmd: FtpCommand): Promise<boolean> {
    if (!this.client.encrypted) return this.error(reply(503, 'PROT needs a protected control connection.'));
    if (!this.pbsz) return this.error(reply(503, 'PBSZ first.'));
    const level = cmd.arg.trim().toUpperCase();
    if (level === 'P' || level === 'C') {
      this.prot = level;
      return this.ok(reply(200, level === 'P' ? 'PROT now Private.' : 'PROT now Clear.'));
    }
    if (level === 'S' || level === 'E') return this.error(reply(536, 'Protection level not supported.'));
    return this.error(reply(504, 'Unknown PROT level.'));
  }

  // TransferHost

  async say(r: FtpReply): Promise<void> {
    await this.client.write(Buffer.from(formatReply(r), 'latin1'));
  }

  async openClientData(): Promise<Duplex> {
    return this.dataSetup.open(this.prot === 'P' ? await this.clientTlsContext() : null);
  }

  async watchAbort<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    this.pendingEvent ??= this.client.next(FOREVER);
    let done = false;
    this.pendingEvent.then(
      (ev) => {
        if (done) return;
        if (!ev) return ac.abort();
        if (ev.type === 'line') {
          const p = parseCommand(ev.line);
          if (p.ok && p.command.verb === 'ABOR') {
            this.pendingEvent = null;
            ac.abort();
          }
        }
      },
      () => {
        if (!done) ac.abort();
      },
    );
    try {
      return await fn(ac.signal);
    } finally {
      done = true;
    }
  }

  async upstream<T>(fn: () => Promise<T>): Promise<T> {
    const release = this.server.hold();
    try {
      return await fn();
    } catch (e) {
      throw new UpstreamLost(e);
    } finally {
      release();
    }
  }

  emit(e: Omit<SecurityEvent, 'listener' | 'protocol' | 'client' | 'server'>): void {
    this.ctx.deps.events.emit({
      listener: this.ctx.cfg.name,
      protocol: 'ftp',
      client: this.clientAddress,
      server: this.serverName,
      ...e,
    });
  }
}

function handshake(tls: TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error) => {
      tls.off('secure', onSecure);
      tls.off('error', onError);
      tls.off('close', onClose);
      if (e) reject(e);
      else resolve();
    };
    const onSecure = () => done();
    const onError = (e: Error) => done(e);
    const onClose = () => done(new Error('client closed during the TLS handshake'));
    tls.once('secure', onSecure);
    tls.once('error', onError);
    tls.once('close', onClose);
  });
}
