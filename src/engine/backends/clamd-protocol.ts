/**
 * clamd's wire protocol, sans-IO (ClamAV clamd(8), session.c): `z`-prefixed NUL-terminated
 * commands, INSTREAM chunks framed by a 4-byte big-endian length, replies terminated the same way.
 */
import type { Verdict } from '../types.js';

export function command(name: string): Buffer {
  return Buffer.from(`z${name}\0`, 'latin1');
}

export function chunkHeader(length: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(length, 0);
  return b;
}

export const END_OF_STREAM = Buffer.alloc(4);

/** Collects bytes until the NUL (or LF, for `n` framing) that ends one reply. */
export class ReplyReader {
  private parts: Buffer[] = [];
  private size = 0;
  constructor(private readonly maxReply = 64 * 1024) {}

  /** Returns the reply text once complete, else null. Throws on an oversized reply. */
  push(chunk: Buffer): string | null {
    const end = chunk.findIndex((c) => c === 0 || c === 10);
    if (end >= 0) {
      this.parts.push(chunk.subarray(0, end));
      const text = Buffer.concat(this.parts).toString('utf8');
      this.parts = [];
      this.size = 0;
      return text;
    }
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size > this.maxReply) throw new Error(`clamd reply longer than ${this.maxReply} bytes`);
    return null;
  }
}

/**
 * Maps a scan reply to a verdict: `stream: OK`, `stream: NAME FOUND`, `stream: REASON ERROR`,
 * or a bare error such as `INSTREAM size limit exceeded. ERROR`.
 */
export function parseScanReply(reply: string, location: string[]): Verdict {
  const text = reply.replace(/^\d+: /, '').trim();
  const colon = text.indexOf(': ');
  const body = colon >= 0 ? text.slice(colon + 2) : text;
  if (body === 'OK') return { status: 'clean' };
  if (body.endsWith(' FOUND')) return { status: 'infected', signature: body.slice(0, -6), location };
  if (text.startsWith('INSTREAM size limit exceeded')) {
    return {
      status: 'error',
      code: 'ERR_CLAMD_SIZE_LIMIT',
      reason: 'clamd: INSTREAM size limit exceeded (StreamMaxLength)',
    };
  }
  if (body.endsWith(' ERROR'))
    return { status: 'error', code: 'ERR_CLAMD_ERROR', reason: `clamd: ${body.slice(0, -6)}` };
  return {
    status: 'error',
    code: 'ERR_CLAMD_PROTOCOL',
    reason: `clamd: unexpected reply "${text.slice(0, 200)}"`,
  };
}
