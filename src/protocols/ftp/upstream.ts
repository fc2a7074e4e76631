/**
 * The server leg of an FTP relay: connect (upstream first), read the greeting, bring TLS up as
 * configured — implicit (TLS from the first byte) or explicit (AUTH TLS, then PBSZ 0 and PROT P,
 * RFC 4217 §4–§9) — and open data connections in the configured mode.
 *
 * Data connections toward the server resume the control connection's TLS session. vsftpd's
 * `require_ssl_reuse=YES` (its default) refuses any other ("522 SSL connection failed; session reuse
 * required"). With TLS 1.3 the resumable session only exists once the server's NewSessionTicket has
 * been read after the handshake (Node's 'session' event), so a data connection waits for it.
 */
import type { Socket } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { observeTls } from '../../admin/metrics.js';
import { UpstreamError } from '../../errors.js';
import { formatHostPort, UpstreamFirstConnector } from '../../net/connect.js';
import { connectUpstreamTls, verificationFailure } from '../../tls/upstream.js';
import { SmtpChannel } from '../smtp/channel.js';
import { formatEprtArg, formatPortArg, parse227, parse229, plainAddress } from './address.js';
import type { FtpContext } from './context.js';
import { type DataListener, openDataListener } from './data.js';
import { type FtpReply, FtpReplyAssembler, isPreliminary, replySummary } from './reply.js';

/** Reply lines from a server: generous but bounded (a 257 with a long path, a STAT line). */
export const MAX_REPLY_LINE = 8192;
/** RFC 959 sets no reply timeout; vsftpd's data_connection_timeout is 300 s. 5 minutes, as for SMTP. */
export const REPLY_TIMEOUT_MS = 300_000;
/** How long a data connection waits for the TLS 1.3 ticket of the control connection. */
const TICKET_WAIT_MS = 5_000;

const connector = new UpstreamFirstConnector();

export type Transfer = { reply: FtpReply; data: null } | { reply: FtpReply; data: Socket | TLSSocket };

export class ServerLeg {
  readonly where: string;
  lastUse = Date.now();
  private holds = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly assembler = new FtpReplyAssembler();
  private session: Buffer | null = null;
  private controlTls: TLSSocket | null = null;
  private sessionWaiters: (() => void)[] = [];
  private noEpsv = false;
  private noEprt = false;

  private constructor(
    private readonly ctx: FtpContext,
    readonly channel: SmtpChannel,
    readonly greeting: FtpReply,
    readonly certificate: PeerCertificate | null,
  ) {
    this.where = formatHostPort(ctx.target.host, ctx.target.port);
  }

  /** True while some exchange with the server is under way (no keepalive NOOP may interleave). */
  get busy(): boolean {
    return this.holds > 0;
  }

  /** Marks the leg busy until the returned function is called (nestable). */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (!released) this.holds--;
      released = true;
    };
  }

  get encrypted(): boolean {
    return this.channel.encrypted;
  }

  /** Connects, reads the greeting and negotiates TLS; the client has seen nothing yet. */
  static async open(ctx: FtpContext): Promise<ServerLeg> {
    const { cfg, target } = ctx;
    const up = ctx.deps.tls.upstream;
    const where = formatHostPort(target.host, target.port);
    const tlsOptions = {
      host: target.host,
      port: target.port,
      verify: up.verify,
      extraCa: up.extraCa,
      timeoutMs: cfg.connectTimeout,
    };
    let certificate: PeerCertificate | null = null;
    let socket: Socket | TLSSocket;
    if (cfg.tls.upstream === 'implicit') {
      const u = await observeTls(cfg.name, 'upstream', connectUpstreamTls(tlsOptions));
      socket = u.socket;
      certificate = u.certificate;
    } else {
      socket = await connector.connect(target.host, target.port, { timeoutMs: cfg.connectTimeout });
    }
    const channel = new SmtpChannel(socket, `server ${where}`, MAX_REPLY_LINE);
    const assembler = new FtpReplyAssembler();
    const read = async (): Promise<FtpReply> => {
      for (;;) {
        const r = await readReply(channel, assembler, cfg.connectTimeout);
        // RFC 959 §4.2: 120 "ready in nnn minutes" comes before the real greeting.
        if (r.code !== 120) return r;
      }
    };
    try {
      const greeting = await read();
      let leg: ServerLeg;
      if (cfg.tls.upstream === 'explicit' && greeting.code === 220) {
        await channel.write('AUTH TLS\r\n');
        const auth = await readReply(channel, assembler, cfg.connectTimeout);
        if (auth.code !== 234)
          throw new UpstreamError('ERR_UPSTREAM_TLS', `${where} refused AUTH TLS (${replySummary(auth)})`);
        let sock: TLSSocket | null = null;
        const dropped = await channel.upgradeAsync(async (raw) => {
          const u = await observeTls(
            cfg.name,
            'upstream',
            connectUpstreamTls({ ...tlsOptions, socket: raw }),
          );
          certificate = u.certificate;
          sock = u.socket;
          return u.socket;
        });
        if (dropped > 0)
          ctx.log.warn({ server: where, bytes: dropped }, 'ftp: server sent bytes after its 234: discarded');
        leg = new ServerLeg(ctx, channel, greeting, certificate);
        leg.watchSessions(sock!);
        // RFC 4217 §8–§9: PBSZ 0 then PROT P; every data connection to the server is protected.
        for (const c of ['PBSZ 0', 'PROT P']) {
          const r = await leg.command(c, cfg.connectTimeout);
          if (r.code !== 200)
            throw new UpstreamError('ERR_UPSTREAM_TLS', `${where} refused ${c} (${replySummary(r)})`);
        }
      } else {
        leg = new ServerLeg(ctx, channel, greeting, certificate);
        if (cfg.tls.upstream === 'implicit') {
          leg.watchSessions(socket as TLSSocket);
          for (const c of ['PBSZ 0', 'PROT P']) {
            const r = await leg.command(c, cfg.connectTimeout);
            if (r.code !== 200)
              throw new UpstreamError('ERR_UPSTREAM_TLS', `${where} refused ${c} (${replySummary(r)})`);
          }
        }
      }
      return leg;
    } catch (e) {
      channel.destroy();
      throw e;
    }
  }

  private watchSessions(tls: TLSSocket): void {
    this.controlTls = tls;
    // TLS 1.2: the session exists at the end of the handshake. TLS 1.3: it arrives with a ticket,
    // possibly already read along with the greeting, before this listener was attached.
    if (tls.getProtocol() !== 'TLSv1.3' || tls.getTLSTicket()) this.session = tls.getSession() ?? null;
    tls.on('session', (s: Buffer) => this.rememberSession(s));
  }

  private rememberSession(s: Buffer): void {
    this.session = s;
    for (const w of this.sessionWaiters.splice(0)) w();
  }

  private async resumable(): Promise<Buffer | undefined> {
    if (!this.session && this.controlTls?.getTLSTicket()) this.session = this.controlTls.getSession() ?? null;
    if (this.session) return this.session;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, TICKET_WAIT_MS);
      t.unref();
      this.sessionWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
    return this.session ?? undefined;
  }

  /**
   * Exchanges run one after the other: a keepalive NOOP already on the wire is answered before the
   * next command is written, so replies never pair with the wrong command.
   */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }

  readReply(timeoutMs = REPLY_TIMEOUT_MS): Promise<FtpReply> {
    return this.serial(() => this.read(timeoutMs));
  }

  private async read(timeoutMs: number): Promise<FtpReply> {
    const r = await readReply(this.channel, this.assembler, timeoutMs);
    this.lastUse = Date.now();
    return r;
  }

  /** Sends one command line and reads the next reply. */
  command(line: string, timeoutMs = REPLY_TIMEOUT_MS): Promise<FtpReply> {
    return this.serial(async () => {
      await this.channel.write(Buffer.from(`${line}\r\n`, 'latin1'));
      return this.read(timeoutMs);
    });
  }

  /**
   * Sends a transfer command (RETR, STOR, LIST, …) with a data connection prepared in the configured
   * mode. Returns the server's first reply; with a 1xx, the data connection (TLS when the leg is).
   */
  async transfer(line: string): Promise<Transfer> {
    return this.ctx.cfg.upstreamData === 'active' ? this.activeTransfer(line) : this.passiveTransfer(line);
  }

  private dataTls(opts: { socket?: Socket; port?: number }, session: Buffer | undefined): Promise<TLSSocket> {
    const up = this.ctx.deps.tls.upstream;
    const where = formatHostPort(this.ctx.target.host, opts.port ?? this.ctx.target.port);
    const handshake = connectUpstreamTls({
      host: this.ctx.target.host,
      port: opts.port ?? this.ctx.target.port,
      // Checked below: a resumed session shows no certificate (the control connection's was verified,
      // and resumption proves the same server), a full handshake is verified like the control one.
      verify: false,
      extraCa: up.extraCa,
      timeoutMs: this.ctx.cfg.connectTimeout,
      ...(opts.socket ? { socket: opts.socket } : {}),
      ...(session ? { session } : {}),
    }).then((u) => {
      if (up.verify && !u.socket.isSessionReused()) {
        const failure = verificationFailure(u.socket, u.certificate, this.ctx.target.host, where);
        if (failure) {
          u.socket.destroy();
          throw failure;
        }
      }
      // A data connection's own ticket is as good as the control one's for the next transfer.
      u.socket.on('session', (s: Buffer) => this.rememberSession(s));
      return u.socket;
    });
    return observeTls(this.ctx.cfg.name, 'upstream', handshake);
  }

  private async passivePort(): Promise<number> {
    if (!this.noEpsv) {
      const r = await this.command('EPSV');
      const port = r.code === 229 ? parse229(r.lines.join(' ')) : null;
      if (port) return port;
      if (r.code < 500) throw new UpstreamError('ERR_FTP_DATA', `EPSV failed: ${replySummary(r)}`);
      this.noEpsv = true;
    }
    const r = await this.command('PASV');
    const a = r.code === 227 ? parse227(r.lines.join(' ')) : null;
    if (!a) throw new UpstreamError('ERR_FTP_DATA', `PASV failed: ${replySummary(r)}`);
    // The server's address in 227 is ignored: data goes to the host we already trust (PASV bounce).
    return a.port;
  }

  private async passiveTransfer(line: string): Promise<Transfer> {
    const port = await this.passivePort();
    // Connect (and start TLS) before the command: vsftpd accepts the data connection before it
    // answers 150, and only then runs its side of the handshake.
    const data: Promise<Socket | TLSSocket> = this.encrypted
      ? this.resumable().then((s) => this.dataTls({ port }, s))
      : connector.connect(this.ctx.target.host, port, { timeoutMs: this.ctx.cfg.connectTimeout });
    data.catch(() => {});
    let r: FtpReply;
    try {
      r = await this.command(line);
    } catch (e) {
      void data.then((s) => s.destroy());
      throw e;
    }
    if (!isPreliminary(r)) {
      void data.then(
        (s) => s.destroy(),
        () => {},
      );
      return { reply: r, data: null };
    }
    return { reply: r, data: await data };
  }

  private async activeTransfer(line: string): Promise<Transfer> {
    const sock = this.channel.socket as Socket;
    const local = plainAddress(sock.localAddress ?? '127.0.0.1');
    const remote = sock.remoteAddress ?? this.ctx.target.host;
    const listener: DataListener = await openDataListener({
      ports: this.ctx.ports,
      host: local,
      allowFrom: remote,
      timeoutMs: this.ctx.cfg.dataTimeout,
      log: this.ctx.log,
    });
    try {
      let r: FtpReply | null = null;
      if (!this.noEprt) {
        r = await this.command(`EPRT ${formatEprtArg({ host: local, port: listener.port })}`);
        if (r.code >= 500) this.noEprt = true;
      }
      if (this.noEprt) r = await this.command(`PORT ${formatPortArg({ host: local, port: listener.port })}`);
      if (!r || r.code !== 200)
        throw new UpstreamError('ERR_FTP_DATA', `active mode refused: ${r ? replySummary(r) : ''}`);
      const first = await this.command(line);
      if (!isPreliminary(first)) return { reply: first, data: null };
      const tcp = await listener.accept();
      if (!this.encrypted) return { reply: first, data: tcp };
      return { reply: first, data: await this.dataTls({ socket: tcp }, await this.resumable()) };
    } finally {
      listener.close();
    }
  }
}

/** Reads one complete FTP reply from a channel. */
export async function readReply(
  channel: SmtpChannel,
  assembler: FtpReplyAssembler,
  timeoutMs: number,
): Promise<FtpReply> {
  for (;;) {
    const ev = await channel.next(timeoutMs);
    if (!ev) throw new UpstreamError('ERR_UPSTREAM_RESET', `${channel.peer} closed the connection`);
    if (ev.type !== 'line')
      throw new UpstreamError(
        'ERR_FTP_BAD_REPLY',
        `${channel.peer} sent a reply line longer than ${MAX_REPLY_LINE} bytes`,
      );
    const r = assembler.push(ev.line);
    if (r) return r;
  }
}
