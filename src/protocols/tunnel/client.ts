/**
 * Client library for message mode (README "mTLS tunnel"):
 *
 *   const c = await connect({ host, port, cert, key, ca });
 *   const answer = await c.request(Buffer.from('payment'));
 *   await c.close();
 *
 * One TLS connection carries many requests, pipelined; each frame is MAC'd with a key exported from
 * this TLS session. Heartbeats detect a dead gateway; the client reconnects with backoff. A request in
 * flight when the connection drops rejects with ERR_TUNNEL_DISCONNECTED (it is never resent behind
 * the caller's back: the backend may already have processed it). Requests made while reconnecting
 * wait for the new connection, up to their timeout.
 */
import { EventEmitter } from 'node:events';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { ScangateError } from '../../errors.js';
import {
  DEFAULT_MAX_PAYLOAD,
  decodeErrorPayload,
  ErrorCode,
  errorCodeName,
  FrameDecoder,
  FrameError,
  FrameType,
  FrameWriter,
  writeThrough,
} from './frame.js';
import { Heartbeat } from './heartbeat.js';
import { sessionMacs } from './keys.js';

export { ErrorCode } from './frame.js';

export interface TunnelClientOptions {
  host: string;
  port: number;
  /** PEM text or Buffers (read the files yourself; the CLI does). */
  cert: string | Buffer;
  key: string | Buffer;
  /** CA bundle the gateway's certificate must chain to. */
  ca: string | Buffer;
  /** Name checked against the gateway's certificate; default `host`. */
  servername?: string;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  maxPayload?: number;
}

export type TunnelClientErrorCode =
  | 'ERR_TUNNEL_REMOTE'
  | 'ERR_TUNNEL_DISCONNECTED'
  | 'ERR_TUNNEL_TIMEOUT'
  | 'ERR_TUNNEL_CLOSED'
  | 'ERR_TUNNEL_CONNECT';

export class TunnelClientError extends ScangateError {
  constructor(
    code: TunnelClientErrorCode,
    message: string,
    /** For ERR_TUNNEL_REMOTE: the ERROR frame's code (ErrorCode). */
    readonly wireCode?: number,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

interface Waiter {
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
  at: number;
  timeoutMs: number;
  payload?: Buffer;
}

interface Link {
  socket: TLSSocket;
  writer: FrameWriter;
  heartbeat: Heartbeat;
}

export class TunnelClient extends EventEmitter {
  private link: Link | null = null;
  private readonly inflight = new Map<number, Waiter>();
  /** Requests made while no connection is up. */
  private waiting: Waiter[] = [];
  private nextId = 1;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly sweeper: NodeJS.Timeout;
  private readonly o: Required<Omit<TunnelClientOptions, 'servername'>> & { servername: string };

  constructor(options: TunnelClientOptions) {
    super();
    this.o = {
      connectTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      heartbeatIntervalMs: 15_000,
      heartbeatTimeoutMs: 45_000,
      reconnect: true,
      backoffMinMs: 100,
      backoffMaxMs: 10_000,
      maxPayload: DEFAULT_MAX_PAYLOAD,
      servername: options.host,
      ...options,
    };
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(20, this.o.requestTimeoutMs / 4)));
    this.sweeper.unref();
  }

  get connected(): boolean {
    return this.link !== null;
  }

  /** The TLS socket of the current connection (tests, diagnostics). */
  get socket(): TLSSocket | null {
    return this.link?.socket ?? null;
  }

  /** Opens the first connection; rejects if it fails (later losses reconnect in the background). */
  async open(): Promise<this> {
    await this.dial();
    return this;
  }

  /** Sends one request and resolves with the backend's answer. */
  request(payload: Uint8Array, opts: { timeoutMs?: number } = {}): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.closed) {
        reject(new TunnelClientError('ERR_TUNNEL_CLOSED', 'client is closed'));
        return;
      }
      const w: Waiter = {
        resolve,
        reject,
        at: Date.now(),
        timeoutMs: opts.timeoutMs ?? this.o.requestTimeoutMs,
      };
      if (this.link) this.send(this.link, w, payload);
      else {
        w.payload = Buffer.from(payload);
        this.waiting.push(w);
      }
    });
  }

  /** Says GOAWAY, waits (bounded) for answers in flight, closes. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const w of this.waiting) w.reject(new TunnelClientError('ERR_TUNNEL_CLOSED', 'client closed'));
    this.waiting = [];
    const link = this.link;
    if (!link) return;
    link.writer.pushError(FrameType.GOAWAY, 0, ErrorCode.NONE, 'client closing');
    link.writer.flush();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        link.socket.destroy();
        resolve();
      }, timeoutMs);
      t.unref();
      link.socket.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private send(link: Link, w: Waiter, payload: Uint8Array): void {
    let id = this.nextId;
    while (this.inflight.has(id)) id = (id + 1) >>> 0 || 1;
    this.nextId = (id + 1) >>> 0 || 1;
    this.inflight.set(id, w);
    link.writer.push(FrameType.REQUEST, id, payload);
  }

  private dial(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = tlsConnect({
        host: this.o.host,
        port: this.o.port,
        servername: this.o.servername,
        cert: this.o.cert,
        key: this.o.key,
        ca: this.o.ca,
        minVersion: 'TLSv1.2',
      });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy(
          new TunnelClientError('ERR_TUNNEL_CONNECT', `no TLS session within ${this.o.connectTimeoutMs} ms`),
        );
      }, this.o.connectTimeoutMs);
      timer.unref();
      const onEarlyError = (e: Error) => {
        clearTimeout(timer);
        reject(
          e instanceof TunnelClientError
            ? e
            : new TunnelClientError(
                'ERR_TUNNEL_CONNECT',
                `cannot connect to the gateway: ${e.message}`,
                undefined,
                {
                  cause: e,
                },
              ),
        );
      };
      socket.once('error', onEarlyError);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.off('error', onEarlyError);
        socket.on('error', (e) => this.emit('warning', e));
        this.attach(socket);
        resolve();
      });
    });
  }

  private attach(socket: TLSSocket): void {
    const macs = sessionMacs(socket);
    const decoder = new FrameDecoder({ maxPayload: this.o.maxPayload, mac: macs.gatewayToClient });
    const writer = new FrameWriter(writeThrough(socket), macs.clientToGateway);
    const heartbeat = new Heartbeat(
      this.o.heartbeatIntervalMs,
      this.o.heartbeatTimeoutMs,
      () => writer.push(FrameType.PING, 0),
      () => {
        this.emit('warning', new Error(`gateway silent for ${this.o.heartbeatTimeoutMs} ms; reconnecting`));
        socket.destroy();
      },
    ).start();
    const link: Link = { socket, writer, heartbeat };
    this.link = link;
    this.attempt = 0;
    socket.on('data', (chunk: Buffer) => {
      heartbeat.seen();
      decoder.push(chunk);
      try {
        for (let f = decoder.next(); f; f = decoder.next()) {
          if (f.type === FrameType.RESPONSE || f.type === FrameType.ERROR) {
            const w = this.inflight.get(f.id);
            if (!w) continue;
            this.inflight.delete(f.id);
            // The payload view is handed over as is: chunks are never reused, so it stays valid.
            if (f.type === FrameType.RESPONSE) w.resolve(f.payload);
            else {
              const e = decodeErrorPayload(f.payload);
              w.reject(
                new TunnelClientError('ERR_TUNNEL_REMOTE', `${errorCodeName(e.code)}: ${e.message}`, e.code),
              );
            }
          } else if (f.type === FrameType.PING) writer.push(FrameType.PONG, f.id, f.payload);
          else if (f.type === FrameType.GOAWAY) {
            const e = decodeErrorPayload(f.payload);
            this.emit('goaway', e);
          }
        }
      } catch (e) {
        this.emit('warning', e instanceof FrameError ? e : new Error(String(e)));
        socket.destroy();
      }
    });
    socket.once('close', () => this.onLost(link));
    this.emit('connected');
    // Requests made while reconnecting go out on the new connection.
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) this.send(link, w, w.payload!);
  }

  private onLost(link: Link): void {
    if (this.link !== link) return;
    this.link = null;
    link.heartbeat.stop();
    const lost = [...this.inflight.values()];
    this.inflight.clear();
    for (const w of lost)
      w.reject(
        new TunnelClientError(
          'ERR_TUNNEL_DISCONNECTED',
          'connection to the gateway lost before the answer; the request may or may not have been processed',
        ),
      );
    this.emit('disconnected');
    if (!this.closed && this.o.reconnect) this.scheduleReconnect();
    else
      for (const w of this.waiting.splice(0))
        w.reject(new TunnelClientError('ERR_TUNNEL_DISCONNECTED', 'not connected'));
  }

  private scheduleReconnect(): void {
    const base = Math.min(this.o.backoffMaxMs, this.o.backoffMinMs * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    this.reconnectTimer = setTimeout(
      () => {
        this.reconnectTimer = null;
        if (this.closed) return;
        this.dial().catch((e: Error) => {
          this.emit('warning', e);
          this.scheduleReconnect();
        });
      },
      base / 2 + Math.random() * (base / 2),
    );
    this.reconnectTimer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, w] of this.inflight) {
      if (now - w.at < w.timeoutMs) continue;
      this.inflight.delete(id);
      w.reject(new TunnelClientError('ERR_TUNNEL_TIMEOUT', `no answer within ${w.timeoutMs} ms`));
    }
    if (this.waiting.length) {
      const keep: Waiter[] = [];
      for (const w of this.waiting) {
        if (now - w.at < w.timeoutMs) keep.push(w);
        else w.reject(new TunnelClientError('ERR_TUNNEL_TIMEOUT', `not connected within ${w.timeoutMs} ms`));
      }
      this.waiting = keep;
    }
  }
}

/** Opens a message-mode connection to a scangate tunnel listener. */
export function connect(options: TunnelClientOptions): Promise<TunnelClient> {
  return new TunnelClient(options).open();
}
