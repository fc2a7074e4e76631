/**
 * APPE, and STOR after REST n, extend a file on the server: what must be judged is the file as it
 * will be, or malware could arrive in harmless pieces. The part of the server's file the upload
 * keeps is read back (RETR) and put in front of the uploaded bytes in a spool of its own.
 */
import type { ObjectSource, Spool } from '../../engine/source.js';
import type { FtpCommand } from './command.js';
import { DataConnectionError, receiveAll } from './data.js';
import type { TransferHost } from './transfer.js';

/** An extending upload: the command, where the kept part of the server's file ends, the new bytes. */
export interface Extension {
  cmd: FtpCommand;
  /** REST+STOR: the first restOffset bytes of the server's file stay (APPE: all of it). */
  restOffset: number;
  tail: ObjectSource;
}

/**
 * Writes into `into` the part of the server's file the upload keeps (all of it for APPE, the first
 * `restOffset` bytes for REST+STOR), then the uploaded bytes. A file that does not exist yet
 * counts as empty. False when the result would exceed maxFileSize.
 */
export async function existingWithTail(h: TransferHost, x: Extension, into: Spool): Promise<boolean> {
  const { cfg } = h.ctx;
  const { cmd, restOffset, tail } = x;
  const keep = cmd.verb === 'APPE' ? Number.POSITIVE_INFINITY : restOffset;
  // The server leg is in a transfer until its final reply: no keepalive NOOP in between.
  const release = h.server.hold();
  try {
    // The server holds the client's REST for the next transfer: clear it for our own RETR.
    if (restOffset > 0) await h.upstream(() => h.server.command('REST 0'));
    const t = await h.upstream(() => h.server.transfer(`RETR ${cmd.arg}`));
    let kept = 0;
    if (t.data) {
      const got = await receiveAll(
        t.data,
        async (chunks) => {
          for (const c of chunks) {
            const part = c.subarray(0, Math.max(0, Math.min(c.length, keep - kept)));
            kept += part.length;
            if (part.length) await into.write(part);
          }
        },
        { max: cfg.maxFileSize, idleMs: cfg.dataTimeout },
      ).catch(() => null);
      const final = await h.upstream(() => h.server.readReply());
      if (!got || final.code >= 400)
        throw new DataConnectionError('ERR_FTP_DATA_LOST', `cannot read ${cmd.arg} back: ${final.code}`);
      if (got.tooBig) return false;
    }
    if (kept + tail.size > cfg.maxFileSize) return false;
    for await (const c of tail.stream(0, tail.size, 1024 * 1024)) await into.write(c);
    return true;
  } finally {
    release();
  }
}
