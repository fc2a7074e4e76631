/**
 * Data connections: the gateway's own listeners (taken from the configured port range, accepting one
 * connection and only from the expected address — the control connection's peer, RFC 2577 §3 "port
 * stealing"), TLS on the client side of a data connection (the gateway is the TLS server, whoever
 * opened the TCP connection, RFC 4217 §7), and moving a whole object in or out with backpressure.
 */
import { randomInt } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { ObjectSource } from '../../engine/source.js';
import { ScangateError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { resetConnection } from '../../net/splice.js';
import { sameAddress } from './address.js';
import { discardRest, type Overflow } from './overflow.js';

export class DataConnectionError extends ScangateError {}

export interface DataListener {
  port: number;
  /** The first connection from the allowed address (others are reset and reported). */
  accept(): Promise<Socket>;
  close(): void;
}

export interface DataListenerOptions {
  ports: { min: number; max: number };
  host: string;
  allowFrom: string;
  timeoutMs: number;
  log: Logger;
  /** Called for each refused connection (foreign address). */
  onForeign?: (address: string) => void;
}

function listenOn(server: Server, host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') resolve(false);
      else reject(e);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve(true);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port, exclusive: true, backlog: 4 });
  });
}

/** Binds a listener on a free port of the range, starting at a random one (ports are not guessable). */
export async function openDataListener(o: DataListenerOptions): Promise<DataListener> {
  const size = o.ports.max - o.ports.min + 1;
  const start = randomInt(size);
  let accepted: Socket | null = null;
  let waiter: { resolve: (s: Socket) => void; reject: (e: Error) => void } | null = null;
  let failure: Error | null = null;
  const server = createServer({ allowHalfOpen: true, noDelay: true });
  server.on('connection', (s: Socket) => {
    s.on('error', () => {});
    if (accepted || !sameAddress(s.remoteAddress, o.allowFrom)) {
      o.log.warn(
        { from: s.remoteAddress, expected: o.allowFrom, port: port },
        'ftp: data connection from an unexpected address: reset',
      );
      if (!accepted) o.onForeign?.(s.remoteAddress ?? '?');
      resetConnection(s);
      return;
    }
    accepted = s;
    server.close();
    clearTimeout(timer);
    waiter?.resolve(s);
  });
  let port = 0;
  for (let i = 0; i < size; i++) {
    const p = o.ports.min + ((start + i) % size);
    if (await listenOn(server, o.host, p)) {
      port = p;
      break;
    }
  }
  if (!port) {
    server.close();
    throw new DataConnectionError('ERR_FTP_NO_PORT', `no free data port in ${o.ports.min}-${o.ports.max}`);
  }
  const timer = setTimeout(() => {
    failure = new DataConnectionError('ERR_FTP_DATA_TIMEOUT', `no data connection within ${o.timeoutMs} ms`);
    server.close();
    waiter?.reject(failure);
  }, o.timeoutMs);
  timer.unref();
  return {
    port,
    accept() {
      if (accepted) return Promise.resolve(accepted);
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    close() {
      clearTimeout(timer);
      if (server.listening) server.close();
      if (!failure) failure = new DataConnectionError('ERR_FTP_DATA_CLOSED', 'data listener closed');
      waiter?.reject(failure);
      waiter = null;
    },
  };
}

/** TLS server side of a client data connection (PROT P). */
export function serveTls(socket: Socket, context: SecureContext, timeoutMs: number): Promise<TLSSocket> {
  const tls = new TLSSocket(socket, { isServer: true, secureContext: context });
  tls.on('error', () => {});
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new DataConnectionError('ERR_FTP_DATA_TLS', 'data TLS handshake timeout')),
      timeoutMs,
    );
    const done = (e?: Error) => {
      clearTimeout(timer);
      tls.off('secure', onSecure);
      tls.off('error', onError);
      tls.off('close', onClose);
      if (e) {
        tls.destroy();
        reject(e);
      } else resolve(tls);
    };
    const onSecure = () => done();
    const onError = (e: Error) =>
      done(new DataConnectionError('ERR_FTP_DATA_TLS', `data TLS handshake failed: ${e.message}`));
    const onClose = () =>
      done(new DataConnectionError('ERR_FTP_DATA_TLS', 'client closed the data connection during TLS'));
    tls.once('secure', onSecure);
    tls.on('error', onError);
    tls.once('close', onClose);
  });
}

export interface ReceiveResult {
  bytes: number;
  /** More than `max` bytes arrived; reading for the sink stopped there. */
  tooBig: boolean;
  /** tooBig with `drain` set: the rest of the sender's bytes, being read and dropped. */
  overflow?: Overflow;
}

/** Received bytes are handed to the sink in batches of about this size (one spool or socket write each). */
const BATCH = 1024 * 1024;
/** Batches handed to the sink and not yet taken, past which the socket is paused (backpressure). */
const BATCHES_IN_FLIGHT = 4;

export interface ReceiveOptions {
  /** Most bytes accepted; past it reading stops and the result says tooBig. */
  max: number;
  /**
   * Past `max`, read and drop up to this many more bytes so that the sender can finish its send and
   * read the reply (overflow.ts); 0 or absent: destroy the connection at once.
   */
  drain?: number;
  /** Longest silence on the connection. */
  idleMs: number;
  signal?: AbortSignal;
}

/**
 * Reads a data connection to its end into `sink`, at most `max` bytes. The sink gets the chunks as
 * they came off the socket, a batch of about BATCH bytes at a time, never copied together: a spool
 * joins them for one file write, a relay hands them to one writev. Batching keeps a 16 KiB-record
 * TLS stream from costing one file write or one system call per record; the socket keeps being read
 * while a batch is taken (a file write runs on libuv's thread pool, a relayed batch waits for the
 * receiver: stopping the socket for each one serialised the two legs), and is paused only when
 * BATCHES_IN_FLIGHT batches are outstanding.
 */
export function receiveAll(
  stream: Duplex,
  sink: (chunks: Buffer[]) => Promise<void> | void,
  o: ReceiveOptions,
): Promise<ReceiveResult> {
  const { max, idleMs, signal } = o;
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let writing: Promise<void> = Promise.resolve();
    let inFlight = 0;
    let settled = false;
    const idle = setIdle(stream, idleMs);
    const finish = (e: unknown, result?: ReceiveResult) => {
      if (settled) return;
      settled = true;
      idle();
      signal?.removeEventListener('abort', onAbort);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
      // Batches already handed to the sink finish first: the caller disposes of the spool next, and
      // a write landing after that would reopen or hit a closed file.
      const settle = () => (e ? reject(asDataError(e)) : resolve(result!));
      writing.then(settle, settle);
    };
    const flush = (): Promise<void> => {
      if (batchBytes === 0) return writing;
      const chunks = batch;
      batch = [];
      batchBytes = 0;
      inFlight++;
      writing = writing.then(async () => {
        await sink(chunks);
        inFlight--;
      });
      return writing;
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > max) {
        // Nothing past max reaches the sink: this chunk and the rest are dropped or never read.
        const drain = o.drain ?? 0;
        const result: ReceiveResult = { bytes, tooBig: true };
        if (drain <= 0) stream.destroy();
        finish(null, result);
        // After finish: it clears this function's idle timer, the drain sets its own.
        if (drain > 0) result.overflow = discardRest(stream, drain, idleMs);
        return;
      }
      batch.push(chunk);
      batchBytes += chunk.length;
      if (batchBytes >= BATCH) {
        const written = flush();
        if (inFlight >= BATCHES_IN_FLIGHT) stream.pause();
        written.then(
          () => {
            if (!settled && stream.isPaused() && inFlight < BATCHES_IN_FLIGHT) stream.resume();
          },
          (e) => {
            // The relay failed on the other side: the sender must not take this for a clean end.
            resetConnection(stream);
            finish(e);
          },
        );
      }
    };
    const onEnd = () => {
      // Our side closes too (TLS close_notify, then FIN): sockets here allow half-open, and a server
      // that waits for the peer's close_notify (vsftpd under TLS 1.3) withholds its 226 until then.
      stream.end();
      flush().then(
        () => finish(null, { bytes, tooBig: false }),
        (e) => finish(e),
      );
    };
    const onError = (e: Error) => finish(e);
    const onClose = () => {
      if (!stream.readableEnded)
        finish(new DataConnectionError('ERR_FTP_DATA_LOST', 'data connection closed early'));
    };
    const onAbort = () => {
      stream.destroy();
      finish(new DataConnectionError('ERR_FTP_ABORTED', 'transfer aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) return onAbort();
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.on('error', onError);
    stream.once('close', onClose);
  });
}

/** One buffer from a batch of chunks (a copy only when there are several). */
export function joined(chunks: Buffer[]): Buffer {
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/**
 * Writes chunks to a data connection as one writev (corked), then waits while the receiver is
 * behind: the caller's reading pauses with it, so backpressure reaches the sending side.
 */
export async function writeChunks(stream: Duplex, chunks: Buffer[]): Promise<void> {
  if (stream.destroyed) throw new DataConnectionError('ERR_FTP_DATA_LOST', 'data connection lost');
  if (chunks.length > 1) stream.cork();
  for (const c of chunks) stream.write(c);
  if (chunks.length > 1) stream.uncork();
  if (stream.writableNeedDrain) await drain(stream);
}

/** Ends a data connection cleanly (TLS close_notify, then FIN) and waits until it is closed. */
export function endGracefully(stream: Duplex): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let failure: Error | null = null;
    const onError = (e: Error) => {
      failure ??= e;
    };
    stream.on('error', onError);
    const done = () => {
      stream.off('error', onError);
      if (failure) reject(asDataError(failure));
      else resolve();
    };
    if (stream.destroyed) return done();
    stream.once('close', done);
    stream.end();
  });
}

/** Bytes per write when sending a spooled file: fewer, larger writes (one file read and one socket write each). */
const SEND_CHUNK = 4 * 1024 * 1024;

/** Writes an object (from `start` on) to a data connection, then closes it (TLS close_notify, then FIN) and waits. */
export async function sendAll(
  stream: Duplex,
  source: ObjectSource,
  idleMs: number,
  signal?: AbortSignal,
  start = 0,
): Promise<number> {
  let bytes = 0;
  const idle = setIdle(stream, idleMs);
  let failure: Error | null = null;
  const onError = (e: Error) => {
    failure ??= e;
  };
  stream.on('error', onError);
  // An ABOR must also cut a write that waits for a reader who stopped reading.
  const onAbort = () => stream.destroy();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const chunk of source.stream(Math.min(start, source.size), source.size, SEND_CHUNK)) {
      if (signal?.aborted) throw new DataConnectionError('ERR_FTP_ABORTED', 'transfer aborted');
      if (failure || stream.destroyed)
        throw new DataConnectionError('ERR_FTP_DATA_LOST', 'data connection lost');
      bytes += chunk.length;
      if (!stream.write(chunk)) await drain(stream);
    }
    if (failure) throw failure;
    await endGracefully(stream);
    return bytes;
  } catch (e) {
    stream.destroy();
    if (signal?.aborted) throw new DataConnectionError('ERR_FTP_ABORTED', 'transfer aborted');
    throw asDataError(e);
  } finally {
    idle();
    stream.off('error', onError);
    signal?.removeEventListener('abort', onAbort);
  }
}

function asDataError(e: unknown): DataConnectionError {
  if (e instanceof DataConnectionError) return e;
  return new DataConnectionError('ERR_FTP_DATA_LOST', `data connection failed: ${(e as Error).message}`, {
    cause: e,
  });
}

function drain(stream: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error) => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      if (e) reject(e);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new DataConnectionError('ERR_FTP_DATA_LOST', 'data connection closed'));
    stream.once('drain', onDrain);
    stream.once('close', onClose);
  });
}

function setIdle(stream: Duplex, ms: number): () => void {
  const s = stream as Duplex & { setTimeout?: (ms: number) => void };
  if (!s.setTimeout || !(ms > 0)) return () => {};
  const onTimeout = () =>
    stream.destroy(new DataConnectionError('ERR_FTP_DATA_TIMEOUT', `data connection idle for ${ms} ms`));
  s.setTimeout(ms);
  stream.on('timeout', onTimeout);
  return () => {
    s.setTimeout?.(0);
    stream.off('timeout', onTimeout);
  };
}
