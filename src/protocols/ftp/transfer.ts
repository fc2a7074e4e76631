/**
 * One file transfer through the gateway: downloads here, uploads in upload.ts, and what both share
 * (the gate, the verdict's meaning, the keepalive). Files up to holdLimit are store-and-forward:
 * - download (RETR): the server's data is spooled whole and scanned; only a clean file is offered
 *   to the client (the server's own 150, the data, the server's 226). An infected file gets 550 as
 *   the first and only reply, so the client never receives a byte of it (frox's shape, §2.1 of the
 *   reference notes, but fail-closed and for TLS data channels too).
 * - upload (STOR, APPE, STOU): the client's data is spooled whole and scanned before the server
 *   gets a byte; an infected file gets 550. The server's refusal of a clean upload (553, 452, …)
 *   reaches the client unchanged.
 * Larger files stream through with the last keepBack bytes held until the verdict (gate.ts); an
 * infected one is cut: the receiver's data connection is reset, never ended cleanly, the client
 * gets 550 and no 226, and a partial upload is deleted on the server (DELE).
 * Listings (LIST, NLST, MLSD) take the download path, held, without the scan.
 * While a scan or a slow client holds the server leg idle, NOOPs keep it from timing out.
 */
import type { Duplex } from 'node:stream';
import type { SecurityEvent } from '../../admin/events.js';
import { Spool } from '../../engine/source.js';
import { scanFailure, type Verdict } from '../../engine/types.js';
import type { FtpCommand } from './command.js';
import type { FtpContext } from './context.js';
import { DataConnectionError, type ReceiveResult, receiveAll, sendAll } from './data.js';
import { TransferGate } from './gate.js';
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
  /**
   * Files of this session whose download was cut after part of them had left. A client that
   * retries one (lftp takes a 550 after some data for a temporary error and tries again, forever)
   * gets it held whole, and so a 550 before any byte, which it takes as final.
   */
  readonly cutFiles: Set<string>;
}

/** Names remembered in cutFiles, at most. */
const CUT_FILES_MAX = 64;

export const ABORTED = [
  reply(426, 'Connection closed; transfer aborted.'),
  reply(226, 'Closing data connection; ABOR successful.'),
];

export function isAbort(e: unknown): boolean {
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
 * What a verdict means for the transfer: null to deliver, else the refusal to send. Emits the
 * event: 'blocked' when no byte of the file left, 'partiallyblocked' when part of it had (the HTTP
 * gateway's and c-icap's word for a transfer cut short).
 */
export function refusalFor(
  h: TransferHost,
  verdict: Verdict,
  name: string,
  streamed: boolean,
): FtpReply | null {
  if (verdict.status === 'clean') return null;
  const object = replySafe(name, 300);
  const stopped = streamed ? 'partiallyblocked' : 'blocked';
  if (verdict.status === 'infected') {
    h.emit({
      kind: 'verdict',
      action: stopped,
      object,
      signature: verdict.signature,
      location: verdict.location,
    });
    return reply(550, `${object}: refused, infected with ${replySafe(verdict.signature, 120)}.`);
  }
  const allow = h.ctx.deps.config.engine.onError === 'allow';
  h.emit({ kind: 'verdict', action: allow ? 'allowed' : stopped, object, reason: verdict.reason });
  if (allow) return null;
  // DESIGN 2: fail closed with the temporary error; the client may retry.
  return reply(451, `${object}: could not be scanned for malware; try again later.`);
}

/**
 * Scans a finished spool. Its scan input carries the SHA-256 computed while the bytes arrived, so the
 * builtin engine matches the file without hashing it again (a second pass over 200 MB cost ~0.2 s).
 */
export async function judgeHeld(h: TransferHost, spool: Spool, name: string): Promise<FtpReply | null> {
  let verdict: Verdict;
  try {
    verdict = await h.ctx.deps.scanner.scan(spool.scanInput(), { name, size: spool.size });
  } catch (e) {
    verdict = scanFailure(e);
  }
  return refusalFor(h, verdict, name, false);
}

export function tooBig(h: TransferHost): FtpReply {
  return reply(552, `Requested file action aborted: larger than ${h.ctx.cfg.maxFileSize} bytes.`);
}

export async function sayAll(h: TransferHost, replies: readonly FtpReply[]): Promise<void> {
  for (const r of replies) await h.say(r);
}

/** The size a server's 150 announces ("… (1234 bytes)", vsftpd, ProFTPD, Pure-FTPd), or null. */
export function announcedSize(r: FtpReply): number | null {
  const m = /\((\d{1,15}) bytes\)/i.exec(r.lines.join(' '));
  return m ? Number(m[1]) : null;
}

/**
 * Receives a data connection into the gate. ABOR (or the client leaving) stops the transfer and
 * cuts the receiving side too: a receiver that stopped reading would otherwise hold the abort up.
 * A failed data connection is returned, not thrown.
 */
export async function receiveInto(
  h: TransferHost,
  data: () => Promise<Duplex> | Duplex,
  gate: TransferGate,
  drain = 0,
): Promise<ReceiveResult | DataConnectionError> {
  const { cfg } = h.ctx;
  let stream: Duplex | null = null;
  let result: ReceiveResult | DataConnectionError;
  try {
    result = await h.watchAbort(async (signal) => {
      signal.addEventListener('abort', () => gate.cut(), { once: true });
      stream = await data();
      return receiveAll(stream, (c) => gate.write(c), {
        max: cfg.maxFileSize,
        drain,
        idleMs: cfg.dataTimeout,
        signal,
      });
    });
  } catch (e) {
    if (!(e instanceof DataConnectionError)) throw e;
    (stream as Duplex | null)?.destroy();
    result = e;
  }
  // Opening the receiver may have failed for a reason that is not the data connection's.
  const failure = gate.openFailure;
  if (failure && !(failure instanceof DataConnectionError)) throw failure;
  return result;
}

/**
 * RETR (scan) or LIST/NLST/MLSD (no scan). A resumed RETR (after REST n) is judged whole: the
 * server is asked for all of the file, the scanner reads all of it and the client gets the bytes
 * from n on. Judging only the rest would let a client put an infected file together from a cut
 * stream (everything but the held tail) and the tail fetched on its own, which looks harmless.
 */
export async function download(
  h: TransferHost,
  cmd: FtpCommand,
  scan: boolean,
  restOffset = 0,
): Promise<void> {
  const { cfg } = h.ctx;
  const skip = scan ? restOffset : 0;
  if (skip > 0) {
    const r = await h.upstream(() => h.server.command('REST 0'));
    if (r.code !== 350) return h.say(r);
  }
  const t = await h.upstream(() => h.server.transfer(cmd.raw));
  if (!t.data) return h.say(t.reply);
  const data = t.data;
  const spool = newSpool(h);
  const size = scan ? announcedSize(t.reply) : null;
  const gate = newGate(h, cmd.arg, spool, {
    hold: !scan || h.cutFiles.has(cmd.arg),
    skip,
    // Announced above holdLimit: stream from the first byte rather than spool holdLimit first.
    early: size !== null && size > cfg.holdLimit,
    open: async () => {
      await h.say(t.reply);
      return h.openClientData();
    },
  });
  try {
    const received = await receiveInto(h, () => data, gate);
    // After the data, the server's final word on the transfer (226, or 426/451 when it failed).
    const final = await h.upstream(() => h.server.readReply());
    if (gate.streaming) return await endStreamedDownload(h, cmd, gate, received, final);
    if (received instanceof DataConnectionError) {
      if (isAbort(received)) return sayAll(h, ABORTED);
      return h.say(final.code >= 400 ? final : reply(426, 'Data connection to the server failed.'));
    }
    if (received.tooBig) return h.say(tooBig(h));
    if (final.code >= 300) return h.say(final);
    const { source } = await spool.finish();
    if (scan) {
      const refusal = await keepServerAlive(h.server, keepaliveMs(h), judgeHeld(h, spool, cmd.arg));
      if (refusal) return h.say(refusal);
    }
    await h.say(t.reply);
    const sent = await keepServerAlive(
      h.server,
      keepaliveMs(h),
      h.watchAbort(async (signal) =>
        sendAll(await h.openClientData(), source, cfg.dataTimeout, signal, skip),
      ),
    ).catch((e: Error) => e);
    if (sent instanceof Error) {
      if (isAbort(sent)) await sayAll(h, ABORTED);
      else if (sent instanceof DataConnectionError)
        await h.say(reply(426, 'Connection closed; transfer aborted.'));
      else throw sent;
      return;
    }
    await h.say(final);
  } finally {
    await gate.dispose();
  }
}

/**
 * A download that streamed: the client has had the server's 150 and all but the held tail. Only a
 * clean verdict (and a server that reported success) gets the tail, a clean end of the data
 * connection and the server's 226; anything else resets the client's data connection.
 */
async function endStreamedDownload(
  h: TransferHost,
  cmd: FtpCommand,
  gate: TransferGate,
  received: ReceiveResult | DataConnectionError,
  final: FtpReply,
): Promise<void> {
  if (received instanceof DataConnectionError) {
    gate.cut();
    return isAbort(received) ? sayAll(h, ABORTED) : h.say(reply(426, 'Connection closed; transfer aborted.'));
  }
  if (received.tooBig || final.code >= 300) {
    gate.cut();
    return h.say(received.tooBig ? tooBig(h) : final);
  }
  const verdict = await keepServerAlive(h.server, keepaliveMs(h), gate.verdict());
  const refusal = refusalFor(h, verdict, cmd.arg, gate.released > 0);
  if (refusal) {
    gate.cut();
    if (h.cutFiles.size < CUT_FILES_MAX) h.cutFiles.add(cmd.arg);
    return h.say(refusal);
  }
  const sent = await gate.deliver().catch((e: Error) => e);
  if (sent instanceof DataConnectionError) return h.say(reply(426, 'Connection closed; transfer aborted.'));
  if (sent instanceof Error) throw sent;
  await h.say(final);
}

export function newGate(
  h: TransferHost,
  name: string,
  spool: Spool,
  o: { hold: boolean; early: boolean; skip: number; open: () => Promise<Duplex> },
): TransferGate {
  const { cfg, deps } = h.ctx;
  return new TransferGate({
    spool,
    holdLimit: o.hold ? Number.POSITIVE_INFINITY : cfg.holdLimit,
    keepBack: cfg.keepBack,
    scanner: deps.scanner,
    name,
    early: o.early && !o.hold,
    skip: o.skip,
    idleMs: cfg.dataTimeout,
    open: o.open,
  });
}

/** Memory up to spoolMemory, then a 0600 temp file in dataDir/spool; SHA-256 computed on the way in. */
export function newSpool(h: TransferHost): Spool {
  return new Spool({ dir: h.ctx.spoolDir, memoryLimit: h.ctx.cfg.spoolMemory });
}

export function keepaliveMs(h: TransferHost): number {
  return h.ctx.cfg.keepalive;
}
