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
  /** More than `max` bytes arrived; reading stopped there. */
  tooBig: boolean;
}

/** Received bytes are handed to the sink in batches of about this size (one spool write each). */
const BATCH = 4 * 1024 * 1024;
/** Batches handed to the sink and not yet written, past which the socket is paused (backpressure). */
const BATCHES_IN_FLIGHT = 2;

/**
 * Reads a data connection to its end into `sink`, at most `max` bytes, with `idleMs` as the longest
 * silence. Batching keeps a 16 KiB-record TLS stream from costing one file write per record; the
 * socket keeps being read while a batch is written (the file write runs on libuv's thread pool, and
 * stopping the socket for each one serialised network and disk: on a loaded box every hand-off
 * waits for a core), and is paused only when BATCHES_IN_FLIGHT writes are outstanding.
 */
export function receiveAll(
  stream: Duplex,
  sink: (chunk: Buffer) => Promise<void> | void,
  max: number,
  idleMs: number,
  signal?: AbortSignal,
): Promise<ReceiveResult> {
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
      const chunk = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
      batch = [];
      batchBytes = 0;
      inFlight++;
      writing = writing.then(async () => {
        await sink(chunk);
        inFlight--;
      });
      return writing;
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > max) {
        stream.destroy();
        finish(null, { bytes, tooBig: true });
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
            stream.destroy();
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

/** Bytes per write when sending a spooled file: fewer, larger writes (one file read and one socket write each). */
const SEND_CHUNK = 4 * 1024 * 1024;

/** Writes an object to a data connection, then closes it (TLS close_notify, then FIN) and waits. */
export async function sendAll(
  stream: Duplex,
  source: ObjectSource,
  idleMs: number,
  signal?: AbortSignal,
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
    for await (const chunk of source.stream(0, source.size, SEND_CHUNK)) {
      if (signal?.aborted) throw new DataConnectionError('ERR_FTP_ABORTED', 'transfer aborted');
      if (failure || stream.destroyed)
        throw new DataConnectionError('ERR_FTP_DATA_LOST', 'data connection lost');
      bytes += chunk.length;
      if (!stream.write(chunk)) await drain(stream);
    }
    await new Promise<void>((resolve, reject) => {
      if (stream.destroyed) return failure ? reject(failure) : resolve();
      stream.once('close', () => (failure ? reject(failure) : resolve()));
      stream.end();
    });
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
