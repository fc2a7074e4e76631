/**
 * The client leg's data connection as the client asks for it: PASV/EPSV open one of the gateway's
 * own listeners (from passivePorts, bound to the control connection's local address, accepting
 * only the control client's address); PORT/EPRT name where the gateway connects, accepted only for
 * the client's own address and an unprivileged port (RFC 2577 §3, FTP bounce). After `EPSV ALL`
 * (RFC 2428 §4) only EPSV is accepted.
 */

import type { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { SecurityEvent } from '../../admin/events.js';
import { observeTls } from '../../admin/metrics.js';
import { formatHostPort, UpstreamFirstConnector } from '../../net/connect.js';
import { format227, format229, type HostPort, parseEprtArg, parsePortArg, sameAddress } from './address.js';
import type { FtpCommand } from './command.js';
import type { FtpContext } from './context.js';
import { type DataListener, openDataListener, serveTls } from './data.js';
import { type FtpReply, reply } from './reply.js';

type Prepared = { kind: 'passive'; listener: DataListener } | { kind: 'active'; target: HostPort };

const connector = new UpstreamFirstConnector();

export interface ClientDataOptions {
  ctx: FtpContext;
  /** The control connection's local and remote addresses (IPv4-mapped ones as plain IPv4). */
  local: string;
  remote: string;
  emit(e: Omit<SecurityEvent, 'listener' | 'protocol' | 'client' | 'server'>): void;
}

export class ClientDataSetup {
  private prepared: Prepared | null = null;
  private epsvAll = false;

  constructor(private readonly o: ClientDataOptions) {}

  get ready(): boolean {
    return this.prepared !== null;
  }

  /** Answers PASV, EPSV, PORT or EPRT: `ok` false for an error reply. */
  prepare(cmd: FtpCommand): Promise<{ ok: boolean; reply: FtpReply }> {
    return cmd.verb === 'PASV' || cmd.verb === 'EPSV' ? this.passive(cmd) : Promise.resolve(this.active(cmd));
  }

  private async passive(cmd: FtpCommand): Promise<{ ok: boolean; reply: FtpReply }> {
    const extended = cmd.verb === 'EPSV';
    const arg = cmd.arg.trim().toUpperCase();
    if (extended && arg === 'ALL') {
      this.epsvAll = true;
      return { ok: true, reply: reply(200, 'EPSV ALL ok.') };
    }
    if (!extended && this.epsvAll)
      return { ok: false, reply: reply(503, 'PASV not allowed after EPSV ALL.') };
    const local = this.o.local;
    const v6 = local.includes(':');
    if (extended && arg && arg !== (v6 ? '2' : '1'))
      return { ok: false, reply: reply(522, `Network protocol not supported, use (${v6 ? 2 : 1})`) };
    if (!extended && v6) return { ok: false, reply: reply(425, 'PASV is IPv4 only; use EPSV.') };
    this.drop();
    const { ctx } = this.o;
    let listener: DataListener;
    try {
      listener = await openDataListener({
        ports: ctx.ports,
        host: local,
        allowFrom: this.o.remote,
        timeoutMs: ctx.cfg.dataTimeout,
        log: ctx.log,
        onForeign: (from) =>
          this.o.emit({
            kind: 'data-connection-refused',
            action: 'blocked',
            reason: `data connection from ${from}`,
          }),
      });
    } catch (e) {
      ctx.log.warn({ err: (e as Error).message }, 'ftp: no data port');
      return { ok: false, reply: reply(425, "Can't open data connection.") };
    }
    this.prepared = { kind: 'passive', listener };
    return {
      ok: true,
      reply: extended
        ? reply(229, format229(listener.port))
        : reply(227, format227({ host: local, port: listener.port })),
    };
  }

  private active(cmd: FtpCommand): { ok: boolean; reply: FtpReply } {
    if (this.epsvAll) return { ok: false, reply: reply(503, `${cmd.verb} not allowed after EPSV ALL.`) };
    const parsed = cmd.verb === 'PORT' ? parsePortArg(cmd.arg.trim()) : parseEprtArg(cmd.arg.trim());
    if ('error' in parsed)
      return {
        ok: false,
        reply: parsed.error === 'family' ? reply(522, parsed.reason) : reply(501, `${parsed.reason}.`),
      };
    if (!sameAddress(parsed.host, this.o.remote) || parsed.port < 1024) {
      this.o.emit({
        kind: 'bounce-refused',
        action: 'blocked',
        reason: `${cmd.verb} to ${formatHostPort(parsed.host, parsed.port)}`,
      });
      return { ok: false, reply: reply(500, `Illegal ${cmd.verb} command.`) };
    }
    this.drop();
    this.prepared = { kind: 'active', target: { host: parsed.host, port: parsed.port } };
    return { ok: true, reply: reply(200, `${cmd.verb} command successful. Consider using PASV.`) };
  }

  /**
   * The data connection: accepted from the listener or opened to the client (from the control
   * connection's local address), then TLS with the gateway as server when `tls` is given (PROT P).
   */
  async open(tls: SecureContext | null): Promise<Duplex> {
    const p = this.prepared;
    if (!p) throw new Error('no data connection prepared');
    const timeoutMs = this.o.ctx.cfg.dataTimeout;
    const tcp =
      p.kind === 'passive'
        ? await p.listener.accept()
        : await connector.connect(p.target.host, p.target.port, { timeoutMs, localAddress: this.o.local });
    return tls ? observeTls(this.o.ctx.cfg.name, 'client', serveTls(tcp, tls, timeoutMs)) : tcp;
  }

  drop(): void {
    if (this.prepared?.kind === 'passive') this.prepared.listener.close();
    this.prepared = null;
  }
}
