/**
 * Uploads (STOR, APPE, STOU), judged before the server gets all of the file (before any of it up to
 * holdLimit). A file up to holdLimit is spooled whole and scanned before the server is asked for a
 * data connection; an infected one gets 550 and the server never gets a byte of it. A larger one
 * streams with the last keepBack bytes held back (gate.ts); an infected one is cut: the server's
 * data connection is reset, never ended cleanly, and the partial file deleted (DELE).
 *
 * STOU is the exception to "the server hears of it only after the scan": the server picks the name
 * and says it in its 150 ("150 FILE: name", RFC 1123 §4.1.2.9), and that 150 must reach the client
 * before the client sends a byte. So STOU goes to the server first, its 150 is the client's, and the
 * server's data connection waits, idle, while the file is held. A refused STOU leaves no file behind
 * either: the (empty or partial) file is deleted under the name the server gave; a server that gave
 * none gets the file held whole, and keeps the empty file of a refused one (logged).
 *
 * APPE and STOR after REST are held whole whatever their size: the part of a file an append extends
 * cannot be taken back (append.ts judges the file as it will be).
 */
import type { Duplex } from 'node:stream';
import type { Spool } from '../../engine/source.js';
import { resetConnection } from '../../net/splice.js';
import { existingWithTail } from './append.js';
import type { FtpCommand } from './command.js';
import { DataConnectionError, sendAll } from './data.js';
import type { TransferGate } from './gate.js';
import type { Overflow } from './overflow.js';
import { type FtpReply, reply, replySummary, stouFileName } from './reply.js';
import {
  ABORTED,
  isAbort,
  judgeHeld,
  keepaliveMs,
  keepServerAlive,
  newGate,
  newSpool,
  receiveInto,
  refusalFor,
  sayAll,
  type TransferHost,
  tooBig,
} from './transfer.js';
import type { Transfer } from './upstream.js';

/** The server's side of one upload: started when the first byte is to go out (STOU: at once). */
class ServerUpload {
  started: Extract<Transfer, { data: Duplex }> | null = null;
  /** The server's refusal of the command (553, 452, …), to go to the client unchanged. */
  refusedBy: FtpReply | null = null;
  /** The file as the server knows it, for DELE; STOU: from its 150, null when it gave none. */
  name: string | null;
  private release: (() => void) | null = null;

  constructor(
    private readonly h: TransferHost,
    private readonly cmd: FtpCommand,
  ) {
    this.name = cmd.verb === 'STOU' ? null : cmd.arg;
  }

  /** Sends the command; the server's data connection, or null when it refused (refusedBy). */
  async start(): Promise<Duplex | null> {
    if (this.started) return this.started.data;
    const t = await this.h.upstream(() => this.h.server.transfer(this.cmd.raw));
    if (!t.data) {
      this.refusedBy = t.reply;
      return null;
    }
    // The server leg is in this transfer until its final reply: no keepalive NOOP meanwhile.
    this.release = this.h.server.hold();
    this.started = t;
    if (this.cmd.verb === 'STOU') this.name = stouFileName(t.reply);
    return t.data;
  }

  /**
   * Undoes a started transfer: the server never sees it complete (its data connection is reset),
   * answers with its failure, and what it stored is deleted.
   */
  async abandon(): Promise<void> {
    const t = this.started;
    if (!t) return;
    if (!t.data.destroyed) resetConnection(t.data);
    const answer = await this.h.upstream(() => this.h.server.readReply());
    const { log } = this.h.ctx;
    log.info({ file: this.name ?? this.cmd.arg, server: replySummary(answer) }, 'ftp: upload cut');
    if (this.name === null) {
      log.warn(
        { reply: replySummary(t.reply) },
        'ftp: STOU file could not be deleted: the server gave no name',
      );
      return;
    }
    const r = await this.h.upstream(() => this.h.server.command(`DELE ${this.name}`));
    if (r.code !== 250)
      log.warn({ file: this.name, reply: replySummary(r) }, 'ftp: partial upload could not be deleted');
  }

  done(): void {
    this.release?.();
  }
}

export async function upload(h: TransferHost, cmd: FtpCommand, restOffset: number): Promise<void> {
  const restPending = restOffset > 0;
  // APPE, and STOR after REST, extend a file on the server: what must be judged is the file as
  // it will be, or malware could arrive in harmless pieces.
  const extending = cmd.verb === 'APPE' || (cmd.verb === 'STOR' && restPending);
  const server = new ServerUpload(h, cmd);
  if (cmd.verb === 'STOU' && !(await server.start())) return h.say(server.refusedBy!);
  const name = server.name ?? cmd.arg;
  const spool = newSpool(h);
  let whole: Spool | null = null;
  // A STOU file the server did not name cannot be deleted after a cut: it is held whole.
  const gate = newGate(h, name, spool, {
    hold: extending || (cmd.verb === 'STOU' && server.name === null),
    skip: 0,
    early: false,
    open: async () => {
      const data = await server.start();
      if (data) return data;
      throw new DataConnectionError(
        'ERR_FTP_REFUSED',
        `server refused ${cmd.verb}: ${replySummary(server.refusedBy!)}`,
      );
    },
  });
  let overflow: Overflow | undefined;
  try {
    await h.say(server.started?.reply ?? reply(150, 'Ok to send data.'));
    const received = await keepServerAlive(
      h.server,
      keepaliveMs(h),
      receiveInto(h, () => h.openClientData(), gate, h.ctx.cfg.tooBigDrain),
    );
    if (server.refusedBy) return await h.say(server.refusedBy);
    const refuse = (r: FtpReply | readonly FtpReply[]) => refuseUpload(h, { server, gate, restPending }, r);
    if (received instanceof DataConnectionError) {
      h.ctx.log.info({ err: received.message, code: received.code }, 'ftp: upload data connection failed');
      return await refuse(isAbort(received) ? ABORTED : reply(426, 'Connection closed; transfer aborted.'));
    }
    overflow = received.overflow;
    if (received.tooBig) {
      // Found infected before the limit (the rest was read and dropped): that is the answer.
      const early = gate.decided;
      const infected = early && refusalFor(h, early, name, gate.released > 0);
      if (infected) return await refuse(infected);
      h.ctx.log.info(
        { file: name, limit: h.ctx.cfg.maxFileSize },
        'ftp: upload larger than maxFileSize: 552',
      );
      return await refuse(tooBig(h));
    }
    if (gate.streaming) return await endStreamedUpload(h, name, gate, refuse);
    const { source } = await spool.finish();
    let judged = spool;
    if (extending) {
      whole = newSpool(h);
      const ok = await keepServerAlive(
        h.server,
        keepaliveMs(h),
        existingWithTail(h, { cmd, restOffset, tail: source }, whole),
      );
      if (!ok) return await refuse(tooBig(h));
      await whole.finish();
      judged = whole;
    }
    const refusal = await keepServerAlive(h.server, keepaliveMs(h), judgeHeld(h, judged, name));
    if (refusal) return await refuse(refusal);
    if (extending && restPending) {
      const r = await h.upstream(() => h.server.command(`REST ${restOffset}`));
      if (r.code !== 350) return await h.say(r);
    }
    const data = await server.start();
    if (!data) return await h.say(server.refusedBy!);
    let failed = false;
    try {
      await sendAll(data, source, h.ctx.cfg.dataTimeout);
    } catch (e) {
      if (!(e instanceof DataConnectionError)) throw e;
      failed = true;
    }
    const final = await h.upstream(() => h.server.readReply());
    if (failed && final.code < 300) return await h.say(reply(426, 'Data connection to the server failed.'));
    await h.say(final);
  } catch (e) {
    overflow?.stop();
    throw e;
  } finally {
    server.done();
    await gate.dispose();
    await whole?.dispose();
    if (overflow) {
      const ended = await overflow.done;
      h.ctx.log.debug(
        { file: name, dropped: overflow.dropped(), ended },
        'ftp: rest of a too-big upload dropped',
      );
    }
  }
}

/**
 * An upload that streamed: the server has all but the held tail. A clean verdict sends the tail
 * and ends the server's data connection cleanly, and the server's reply goes to the client.
 */
async function endStreamedUpload(
  h: TransferHost,
  name: string,
  gate: TransferGate,
  refuse: (r: FtpReply) => Promise<void>,
): Promise<void> {
  const refusal = refusalFor(h, await gate.verdict(), name, gate.released > 0);
  if (refusal) return refuse(refusal);
  const sent = await gate.deliver().catch((e: Error) => e);
  if (sent instanceof Error && !(sent instanceof DataConnectionError)) throw sent;
  const final = await h.upstream(() => h.server.readReply());
  if (sent instanceof Error && final.code < 300)
    return h.say(reply(426, 'Data connection to the server failed.'));
  await h.say(final);
}

/**
 * Refuses an upload. The server's side is undone first, then the client hears why: RFC 959 §5.4
 * lists 552 (and 426, 451, 550) as final replies to STOR after the 150, and a client that reads one
 * can take it that nothing of the file stays on the server (the DELE has been answered). The client's
 * data connection is not reset meanwhile: a too-big upload's rest is being read and dropped
 * (overflow.ts), so the client goes on sending and finds the reply when it is done (curl), or reads
 * it while still sending and stops (lftp).
 */
async function refuseUpload(
  h: TransferHost,
  o: { server: ServerUpload; gate: TransferGate; restPending: boolean },
  r: FtpReply | readonly FtpReply[],
): Promise<void> {
  // Nothing more reaches the server: a streamed transfer's data connection is reset by the gate.
  o.gate.cut();
  if (o.server.started) await o.server.abandon();
  // A REST the server accepted would apply to the next transfer: cancel it.
  else if (o.restPending) await h.upstream(() => h.server.command('REST 0'));
  await sayAll(h, [r].flat());
}
