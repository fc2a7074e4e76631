/**
 * One file transfer through the gateway, store-and-forward in both directions:
 * - download (RETR): the server's data is spooled whole and scanned; only a clean file is offered
 *   to the client (the server's own 150, the data, the server's 226). An infected file gets 550 as
 *   the first and only reply, so the client never receives a byte of it (frox's shape, §2.1 of the
 *   reference notes, but fail-closed and for TLS data channels too).
 * - upload (STOR, APPE, STOU): the client's data is spooled whole and scanned before the server is
 *   even asked to open a data connection; an infected file gets 550 and the server never hears of
 *   it. The server's refusal of a clean upload (553, 452, …) reaches the client unchanged.
 * - listings (LIST, NLST, MLSD) take the download path without the scan.
 * While a scan or a slow client holds the server leg idle, NOOPs keep it from timing out.
 */
import type { Duplex } from 'node:stream';
import type { SecurityEvent } from '../../admin/events.js';
import { type ObjectSource, Spool } from '../../engine/source.js';
import type { Verdict } from '../../engine/types.js';
import type { FtpCommand } from './command.js';
import type { FtpContext } from './context.js';
import { DataConnectionError, receiveAll, sendAll } from './data.js';
import { type FtpReply, reply, replySafe } from './reply.js';
import type { ServerLeg } from './upstream.js';

export interface TransferHost {
  ctx: FtpContext;
  server: ServerLeg;
  /** Sends a reply to the client. */
  say(r: FtpReply): Promise<void>;
  /** The client's data connection as the client asked for it (accept/connect, TLS per PROT). */
  openClientData(): Promise<Duplex>;
  /** Runs `fn`, aborting it when the client sends ABOR (or goes away). */
  watchAbort<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  /** Runs a server-leg operation; failures there end the session with 421. */
  upstream<T>(fn: () => Promise<T>): Promise<T>;
  emit(e: Omit<SecurityEvent, 'listener' | 'protocol' | 'client' | 'server'>): void;
}

const ABORTED = [
  reply(426, 'Connection closed; transfer aborted.'),
  reply(226, 'Closing data connection; ABOR successful.'),
];

function isAbort(e: unknown): boolean {
  return (e as DataConnectionError)?.code === 'ERR_FTP_ABORTED';
}

/** Sends NOOP on the server leg whenever it has been idle for `every` ms while `work` runs. */
export async function keepServerAlive<T>(server: ServerLeg, every: number, work: Promise<T>): Promise<T> {
  let noop: Promise<unknown> = Promise.resolve();
  const timer = setInterval(
    () => {
      if (server.busy || Date.now() - server.lastUse < every) return;
      const release = server.hold();
      noop = server
        .command('NOOP')
        .catch(() => {})
        .finally(release);
    },
    Math.max(250, Math.min(every / 4, 10_000)),
  );
  timer.unref();
  try {
    return await work;
  } finally {
    clearInterval(timer);
    await noop;
  }
}

/**
 * Scans a finished spool. Its scan input carries the SHA-256 computed while the bytes arrived, so the
 * builtin engine matches the file without hashing it again (a second pass over 200 MB cost ~0.2 s).
 */
async function judge(h: TransferHost, spool: Spool, name: string): Promise<FtpReply | null> {
  const { deps } = h.ctx;
  let verdict: Verdict;
  try {
    verdict = await deps.scanner.scan(spool.scanInput(), { name, size: spool.size });
  } catch (e) {
    verdict = { status: 'error', reason: (e as Error).message };
  }
  if (verdict.status === 'clean') return null;
  const object = replySafe(name, 300);
  if (verdict.status === 'infected') {
    h.emit({
      kind: 'verdict',
      action: 'blocked',
      object,
      signature: verdict.signature,
      location: verdict.location,
    });
    return reply(550, `${object}: refused, infected with ${replySafe(verdict.signature, 120)}.`);
  }
  const allow = deps.config.engine.onError === 'allow';
  h.emit({ kind: 'verdict', action: allow ? 'allowed' : 'blocked', object, reason: verdict.reason });
  if (allow) return null;
  // DESIGN 2: fail closed with the temporary error; the client may retry.
  return reply(451, `${object}: could not be scanned for malware; try again later.`);
}

/** RETR (scan) or LIST/NLST/MLSD (no scan). */
export async function download(h: TransferHost, cmd: FtpCommand, scan: boolean): Promise<void> {
  const { cfg } = h.ctx;
  const t = await h.upstream(() => h.server.transfer(cmd.raw));
  if (!t.data) return h.say(t.reply);
  const spool = newSpool(h);
  try {
    let received: Awaited<ReturnType<typeof receiveAll>> | null = null;
    let aborted = false;
    try {
      received = await h.watchAbort((signal) =>
        receiveAll(t.data, (c) => spool.write(c), cfg.maxFileSize, cfg.dataTimeout, signal),
      );
    } catch (e) {
      if (!(e instanceof DataConnectionError)) throw e;
      aborted = isAbort(e);
      t.data.destroy();
    }
    // After the data, the server's final word on the transfer (226, or 426/451 when it failed).
    const final = await h.upstream(() => h.server.readReply());
    if (aborted) {
      for (const r of ABORTED) await h.say(r);
      return;
    }
    if (!received)
      return h.say(final.code >= 400 ? final : reply(426, 'Data connection to the server failed.'));
    if (received.tooBig)
      return h.say(reply(552, `Requested file action aborted: larger than ${cfg.maxFileSize} bytes.`));
    if (final.code >= 300) return h.say(final);
    const { source } = await spool.finish();
    if (scan) {
      const refusal = await keepServerAlive(h.server, keepaliveMs(h), judge(h, spool, cmd.arg));
      if (refusal) return h.say(refusal);
    }
    await h.say(t.reply);
    const sent = await keepServerAlive(
      h.server,
      keepaliveMs(h),
      h.watchAbort(async (signal) => sendAll(await h.openClientData(), source, cfg.dataTimeout, signal)),
    ).catch((e: Error) => e);
    if (sent instanceof Error) {
      if (isAbort(sent)) for (const r of ABORTED) await h.say(r);
      else if (sent instanceof DataConnectionError)
        await h.say(reply(426, 'Connection closed; transfer aborted.'));
      else throw sent;
      return;
    }
    await h.say(final);
  } finally {
    await spool.dispose();
  }
}

/** STOR, APPE, STOU: the client's file, whole and judged, before the server sees a byte. */
export async function upload(h: TransferHost, cmd: FtpCommand, restOffset: number): Promise<void> {
  const { cfg } = h.ctx;
  const restPending = restOffset > 0;
  const spool = newSpool(h);
  let whole: Spool | null = null;
  try {
    await h.say(reply(150, 'Ok to send data.'));
    let received: Awaited<ReturnType<typeof receiveAll>>;
    try {
      received = await keepServerAlive(
        h.server,
        keepaliveMs(h),
        h.watchAbort(async (signal) =>
          receiveAll(
            await h.openClientData(),
            (c) => spool.write(c),
            cfg.maxFileSize,
            cfg.dataTimeout,
            signal,
          ),
        ),
      );
    } catch (e) {
      if (!(e instanceof DataConnectionError)) throw e;
      h.ctx.log.info({ err: e.message, code: e.code }, 'ftp: upload data connection failed');
      if (restPending) await h.upstream(() => h.server.command('REST 0'));
      if (isAbort(e)) for (const r of ABORTED) await h.say(r);
      else await h.say(reply(426, 'Connection closed; transfer aborted.'));
      return;
    }
    const refuse = async (r: FtpReply) => {
      // A REST the server accepted would apply to the next transfer: cancel it.
      if (restPending) await h.upstream(() => h.server.command('REST 0'));
      await h.say(r);
    };
    if (received.tooBig)
      return refuse(reply(552, `Requested file action aborted: larger than ${cfg.maxFileSize} bytes.`));
    const { source } = await spool.finish();
    // APPE, and STOR after REST, extend a file on the server: what must be judged is the file as
    // it will be, or malware could arrive in harmless pieces.
    const extending = cmd.verb === 'APPE' || (cmd.verb === 'STOR' && restPending);
    let judged = spool;
    if (extending) {
      whole = newSpool(h);
      const ok = await keepServerAlive(
        h.server,
        keepaliveMs(h),
        existingWithTail(h, cmd, restOffset, source, whole),
      );
      if (!ok)
        return refuse(reply(552, `Requested file action aborted: larger than ${cfg.maxFileSize} bytes.`));
      await whole.finish();
      judged = whole;
    }
    const refusal = await keepServerAlive(h.server, keepaliveMs(h), judge(h, judged, cmd.arg));
    if (refusal) return refuse(refusal);
    if (extending && restPending) {
      const r = await h.upstream(() => h.server.command(`REST ${restOffset}`));
      if (r.code !== 350) return h.say(r);
    }
    const t = await h.upstream(() => h.server.transfer(cmd.raw));
    if (!t.data) return h.say(t.reply);
    let failed = false;
    try {
      await sendAll(t.data, source, cfg.dataTimeout);
    } catch (e) {
      if (!(e instanceof DataConnectionError)) throw e;
      failed = true;
    }
    const final = await h.upstream(() => h.server.readReply());
    if (failed && final.code < 300) return h.say(reply(426, 'Data connection to the server failed.'));
    await h.say(final);
  } finally {
    await spool.dispose();
    await whole?.dispose();
  }
}

/**
 * Writes into `into` the part of the server's file the upload keeps (all of it for APPE, the first
 * `restOffset` bytes for REST+STOR), then the uploaded bytes. A file that does not exist yet
 * counts as empty. False when the result would exceed maxFileSize.
 */
async function existingWithTail(
  h: TransferHost,
  cmd: FtpCommand,
  restOffset: number,
  tail: ObjectSource,
  into: Spool,
): Promise<boolean> {
  // The server leg is in a transfer until its final reply: no keepalive NOOP in between.
  const release = h.server.hold();
  try {
    return await readBackAndAppend(h, cmd, restOffset, tail, into);
  } finally {
    release();
  }
}

async function readBackAndAppend(
  h: TransferHost,
  cmd: FtpCommand,
  restOffset: number,
  tail: ObjectSource,
  into: Spool,
): Promise<boolean> {
  const { cfg } = h.ctx;
  // The server holds the client's REST for the next transfer: clear it for our own RETR.
  if (restOffset > 0) await h.upstream(() => h.server.command('REST 0'));
  const keep = cmd.verb === 'APPE' ? Number.POSITIVE_INFINITY : restOffset;
  const t = await h.upstream(() => h.server.transfer(`RETR ${cmd.arg}`));
  let kept = 0;
  if (t.data) {
    const got = await receiveAll(
      t.data,
      async (c) => {
        const part = c.subarray(0, Math.max(0, Math.min(c.length, keep - kept)));
        kept += part.length;
        if (part.length) await into.write(part);
      },
      cfg.maxFileSize,
      cfg.dataTimeout,
    ).catch(() => null);
    const final = await h.upstream(() => h.server.readReply());
    if (!got || final.code >= 400)
      throw new DataConnectionError('ERR_FTP_DATA_LOST', `cannot read ${cmd.arg} back: ${final.code}`);
    if (got.tooBig) return false;
  }
  if (kept + tail.size > cfg.maxFileSize) return false;
  for await (const c of tail.stream(0, tail.size, 1024 * 1024)) await into.write(c);
  return true;
}

/** Memory up to spoolMemory, then a 0600 temp file in dataDir/spool; SHA-256 computed on the way in. */
function newSpool(h: TransferHost): Spool {
  return new Spool({ dir: h.ctx.spoolDir, memoryLimit: h.ctx.cfg.spoolMemory });
}

function keepaliveMs(h: TransferHost): number {
  return h.ctx.cfg.keepalive;
}
