/**
 * A Scanner backed by a real clamd (unix socket or TCP). scan() never throws: an unreachable or
 * failing daemon is an `error` verdict with a code, which the protocols map to their temporary
 * error so nothing passes unscanned.
 */
import { createReadStream } from 'node:fs';
import net from 'node:net';
import { Readable } from 'node:stream';
import { parseAddress } from '../../util/units.js';
import type { ScanContext, ScanInput, Scanner, ScannerVersion, Verdict } from '../types.js';
import { chunkHeader, command, END_OF_STREAM, parseScanReply, ReplyReader } from './clamd-protocol.js';

export interface ClamdOptions {
  address: string;
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** Largest INSTREAM chunk; clamd reads chunks into a fixed buffer. */
  maxChunk?: number;
}

class ClamdFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class ClamdScanner implements Scanner {
  private versionText = 'ClamAV (version not yet known)';
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxChunk: number;

  constructor(private readonly opts: ClamdOptions) {
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.maxChunk = opts.maxChunk ?? 64 * 1024;
  }

  private connect(): Promise<net.Socket> {
    const addr = parseAddress(this.opts.address);
    return new Promise((resolve, reject) => {
      const socket = 'path' in addr ? net.connect(addr.path) : net.connect(addr.port, addr.host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new ClamdFailure(
            'ERR_CLAMD_TIMEOUT',
            `clamd at ${this.opts.address} did not accept within ${this.connectTimeoutMs} ms`,
          ),
        );
      }, this.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(socket);
      });
      socket.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new ClamdFailure(
            'ERR_CLAMD_UNAVAILABLE',
            `clamd at ${this.opts.address} is not reachable: ${e.code ?? e.message}`,
          ),
        );
      });
    });
  }

  /** Sends one command (and, for INSTREAM, the data) and resolves with the single reply. */
  private async exchange(name: string, data?: AsyncIterable<Buffer>): Promise<string> {
    const socket = await this.connect();
    try {
      return await new Promise<string>((resolve, reject) => {
        const reader = new ReplyReader();
        let settled = false;
        const finish = (err: Error | null, reply?: string) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(reply!);
        };
        const timer = setTimeout(
          () =>
            finish(
              new ClamdFailure(
                'ERR_CLAMD_TIMEOUT',
                `clamd did not answer ${name} within ${this.timeoutMs} ms`,
              ),
            ),
          this.timeoutMs,
        );
        socket.on('data', (d: Buffer) => {
          try {
            const reply = reader.push(d);
            if (reply !== null) finish(null, reply);
          } catch (e) {
            finish(new ClamdFailure('ERR_CLAMD_PROTOCOL', (e as Error).message));
          }
        });
        // clamd replies and closes as soon as a stream exceeds its limit, while we may still be writing:
        // a write error (EPIPE/ECONNRESET) must not hide the reply, so failures are judged at close.
        let failure: Error | null = null;
        socket.on('error', (e) => {
          failure ??= new ClamdFailure('ERR_CLAMD_UNAVAILABLE', `clamd connection failed: ${e.message}`);
        });
        // A reset during INSTREAM can discard clamd's own reply (typically its StreamMaxLength answer):
        // say that the stream was refused rather than that clamd is down.
        socket.once('close', () =>
          finish(
            name === 'INSTREAM' && failure
              ? new ClamdFailure(
                  'ERR_CLAMD_STREAM_CLOSED',
                  `clamd closed the stream before the end (StreamMaxLength?): ${failure.message}`,
                )
              : (failure ??
                  new ClamdFailure('ERR_CLAMD_UNAVAILABLE', `clamd closed the connection during ${name}`)),
          ),
        );
        socket.write(command(name));
        if (data) this.send(socket, data).catch((e) => finish(e as Error));
      });
    } finally {
      socket.destroy();
    }
  }

  /** Streams INSTREAM chunks with backpressure; stops early if clamd already replied (size limit). */
  private async send(socket: net.Socket, data: AsyncIterable<Buffer>): Promise<void> {
    const write = (b: Buffer) =>
      socket.write(b) ? Promise.resolve() : new Promise<void>((r) => socket.once('drain', () => r()));
    for await (const chunk of data) {
      if (socket.destroyed) return;
      for (let off = 0; off < chunk.length; off += this.maxChunk) {
        const piece = chunk.subarray(off, off + this.maxChunk);
        socket.write(chunkHeader(piece.length));
        await write(piece);
        if (socket.destroyed) return;
      }
    }
    if (!socket.destroyed) socket.write(END_OF_STREAM);
  }

  async scan(input: ScanInput, ctx: ScanContext = {}): Promise<Verdict> {
    const location = [
      ctx.name ?? ('path' in input && typeof input.path === 'string' ? input.path : 'stream'),
    ];
    try {
      const reply = await this.exchange('INSTREAM', toChunks(input));
      return parseScanReply(reply, location);
    } catch (e) {
      const code = e instanceof ClamdFailure ? e.code : ((e as NodeJS.ErrnoException).code ?? 'ERR_CLAMD');
      return { status: 'error', code, reason: (e as Error).message };
    }
  }

  async ping(): Promise<void> {
    const reply = await this.exchange('PING');
    if (reply !== 'PONG') throw new ClamdFailure('ERR_CLAMD_PROTOCOL', `clamd answered PING with "${reply}"`);
  }

  async fetchVersion(): Promise<string> {
    this.versionText = await this.exchange('VERSION');
    return this.versionText;
  }

  version(): ScannerVersion {
    // "ClamAV 1.4.6/27000/Mon Nov 23 …": the middle field is the database version.
    const [engine, db] = this.versionText.split('/');
    return { engine: `clamd (${engine})`, signatures: 0, databaseVersion: db ?? 'unknown' };
  }

  async close(): Promise<void> {}
}

function toChunks(input: ScanInput): AsyncIterable<Buffer> {
  if (Buffer.isBuffer(input)) return [input] as unknown as AsyncIterable<Buffer>;
  if ('path' in input && typeof input.path === 'string' && !('pipe' in input))
    return createReadStream(input.path);
  return input instanceof Readable ? input : Readable.from(input as AsyncIterable<Buffer>);
}
