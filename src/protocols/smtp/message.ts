/**
 * What happens to one received message: scan it whole (the engine unpacks MIME, archives inside
 * attachments, …), then apply the listener's policy. The result is either content to forward — the
 * spooled message with `X-Scangate-*` header lines in front, or a stripped copy — or a reply that
 * refuses it. Nothing here touches a socket.
 *
 * Header lines are prepended, like trace fields (RFC 5322 §3.6.7), so every byte of the original
 * message follows unchanged.
 */
import type { ObjectSource } from '../../engine/source.js';
import type { ScanInput, Scanner, Verdict } from '../../engine/types.js';
import type { Reply } from './reply.js';
import { type RemovedPart, stripInfectedParts } from './strip.js';

export type InfectedPolicy = 'reject' | 'strip' | 'tag';

export interface JudgeOptions {
  scanner: Scanner;
  policy: InfectedPolicy;
  /** engine.onError: `block` refuses with 451 (the sender retries), `allow` forwards unchecked. */
  onError: 'block' | 'allow';
  spoolDir: string;
  spoolMemory: number;
}

export type Decision =
  | {
      action: 'forward';
      /** Header lines to put in front of the content (each ending in CRLF). */
      prefix: Buffer;
      source: ObjectSource;
      verdict: Verdict;
      /** Parts replaced by notices (policy strip). */
      removed: RemovedPart[];
      /** What the event log says happened; null for a clean message. */
      eventAction: 'stripped' | 'tagged' | 'allowed' | null;
      dispose(): Promise<void>;
    }
  | {
      action: 'refuse';
      reply: Reply;
      verdict: Verdict;
      eventAction: 'rejected' | 'blocked';
      /** Why, for logs (a strip that could not isolate the infection, a scan error). */
      reason: string;
    };

/**
 * A received message and how the scanner takes it: the input a Spool handed out (its Buffer or temp
 * file, carrying the SHA-256 computed as the bytes arrived), so the message is hashed once.
 */
export interface SpooledMessage {
  source: ObjectSource;
  input: ScanInput;
}

/** Text safe for a header field or a reply line: no controls, bounded length. */
export function headerSafe(text: string, max = 120): string {
  const clean = text.replace(/[\u0000-\u001f\u007f"\\]/g, '_');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

function where(v: { location: string[] }): string {
  const inner = v.location.filter((l, i) => !(i === 0 && l === 'mail'));
  return inner.length ? ` in ${headerSafe(inner.join('/'), 200)}` : '';
}

function scannedHeader(scanner: Scanner, result: string): string {
  const v = scanner.version();
  return `X-Scangate-Scanned: ${result}; engine="${headerSafe(v.engine, 40)}"; db="${headerSafe(v.databaseVersion, 40)}"\r\n`;
}

export async function judgeMessage(message: SpooledMessage, o: JudgeOptions): Promise<Decision> {
  const { source } = message;
  let verdict: Verdict;
  try {
    verdict = await o.scanner.scan(message.input, { name: 'mail', size: source.size });
  } catch (e) {
    verdict = { status: 'error', reason: (e as Error).message };
  }
  const none = async () => {};

  if (verdict.status === 'clean')
    return {
      action: 'forward',
      prefix: Buffer.from(scannedHeader(o.scanner, 'clean')),
      source,
      verdict,
      removed: [],
      eventAction: null,
      dispose: none,
    };

  if (verdict.status === 'error') {
    if (o.onError === 'allow')
      return {
        action: 'forward',
        prefix: Buffer.from(scannedHeader(o.scanner, `unchecked (${headerSafe(verdict.reason, 80)})`)),
        source,
        verdict,
        removed: [],
        eventAction: 'allowed',
        dispose: none,
      };
    return {
      action: 'refuse',
      reply: { code: 451, lines: ['4.7.1 Message could not be scanned for malware; try again later'] },
      verdict,
      eventAction: 'blocked',
      reason: verdict.reason,
    };
  }

  const rejected = (reason: string): Decision => ({
    action: 'refuse',
    reply: {
      code: 554,
      lines: [
        `5.7.1 Message rejected: it contains malware (${headerSafe(verdict.signature, 80)}${where(verdict)})`,
      ],
    },
    verdict,
    eventAction: 'rejected',
    reason,
  });

  if (o.policy === 'reject') return rejected('policy reject');

  if (o.policy === 'tag')
    return {
      action: 'forward',
      prefix: Buffer.from(
        `X-Scangate-Infected: ${headerSafe(verdict.signature, 80)}${where(verdict)}\r\n${scannedHeader(o.scanner, 'infected')}`,
      ),
      source,
      verdict,
      removed: [],
      eventAction: 'tagged',
      dispose: none,
    };

  // strip: rebuild the message without its infected parts, then make sure what is left is clean.
  let stripped: Awaited<ReturnType<typeof stripInfectedParts>>;
  try {
    stripped = await stripInfectedParts(source, {
      scanner: o.scanner,
      spoolDir: o.spoolDir,
      memoryLimit: o.spoolMemory,
    });
  } catch (e) {
    // A message mailsplit cannot take apart cannot be cleaned: refuse rather than pass it.
    return rejected(`strip failed: ${(e as Error).message}`);
  }
  const fail = async (d: Decision): Promise<Decision> => {
    await stripped.dispose();
    return d;
  };
  if (stripped.error)
    return fail({
      action: 'refuse',
      reply: { code: 451, lines: ['4.7.1 Message could not be scanned for malware; try again later'] },
      verdict: { status: 'error', reason: stripped.error },
      eventAction: 'blocked',
      reason: stripped.error,
    });
  if (stripped.removed.length === 0) return fail(rejected('infection not confined to a removable part'));
  let after: Verdict;
  try {
    after = await o.scanner.scan(stripped.input, {
      name: 'mail',
      size: stripped.source.size,
    });
  } catch (e) {
    after = { status: 'error', reason: (e as Error).message };
  }
  if (after.status !== 'clean')
    return fail(
      rejected(
        after.status === 'error' ? `rescan failed: ${after.reason}` : 'still infected after stripping',
      ),
    );
  const removedLines = stripped.removed
    .map((p) => `X-Scangate-Removed: ${headerSafe(p.name, 100)} (${headerSafe(p.signature, 80)})\r\n`)
    .join('');
  return {
    action: 'forward',
    prefix: Buffer.from(`${removedLines}${scannedHeader(o.scanner, 'cleaned')}`),
    source: stripped.source,
    verdict,
    removed: stripped.removed,
    eventAction: 'stripped',
    dispose: stripped.dispose,
  };
}
