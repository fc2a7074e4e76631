/**
 * Message mode's backend side: a pool of long-lived TCP connections to the application backend,
 * speaking the same frame format without MAC (README, "mTLS tunnel", backend protocol). Requests from
 * every client connection are spread over the pool; each gets a pool-assigned id, and the backend's
 * RESPONSE/ERROR with that id is routed back to the client request it belongs to.
 *
 * A backend restart is absorbed: a lost connection fails exactly the requests it carried (ERROR
 * BACKEND_LOST: the backend may or may not have processed them, so the client decides about retrying),
 * and reconnects with exponential backoff. Requests arriving while no connection is up wait in a
 * bounded queue until one is, or fail with BACKEND_UNAVAILABLE after `queueTimeoutMs`. Nothing a
 * client sent ever disappears without an answer.
 */
import type { Socket } from 'node:net';
import type { EventSink } from '../../admin/events.js';
import type { Logger } from '../../logger.js';
import { formatHostPort, UpstreamFirstConnector } from '../../net/connect.js';
import {
  decodeErrorPayload,
  ErrorCode,
  FrameDecoder,
  FrameType,
  FrameWriter,
  writeThrough,
} from './frame.js';
import { Heartbeat } from './heartbeat.js';

/** Where a forwarded request came from: a client session (or a test). */
export interface RequestOrigin {
  respond(clientId: number, payload: Buffer): void;
  fail(clientId: number, code: number, message: string): void;
  readonly closed: boolean;
}

export interface BackendPoolOptions {
  listener: string;
  host: string;
  port: number;
  connections: number;
  connectTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  requestTimeoutMs: number;
  queueTimeoutMs: number;
  queueLimit: number;
  maxPayload: number;
  log: Logger;
  events: EventSink;
}

interface Pending {
  origin: RequestOrigin;
  clientId: number;
  at: number;
}

interface Queued extends Pending {
  payload: Buffer;
}

class BackendConnection {
  socket: Socket | null = null;
  ready = false;
  pending = new Map<number, Pending>();
  private nextId = 1;
  private writer: FrameWriter | null = null;
  private heartbeat: Heartbeat | null = null;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly pool: BackendPool,
    private readonly o: BackendPoolOptions,
    private readonly connector: UpstreamFirstConnector,
  ) {}

  start(): void {
    void this.connect();
  }

  send(p: Pending, payload: Buffer): void {
    let id = this.nextId;
    while (this.pending.has(id)) id = (id + 1) >>> 0 || 1;
    this.nextId = (id + 1) >>> 0 || 1;
    this.pending.set(id, p);
    this.writer!.push(FrameType.REQUEST, id, payload);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.destroy();
  }

  /** Fails requests older than the deadline (one sweep per second, not a timer per request). */
  sweep(deadline: number): void {
    for (const [id, p] of this.pending) {
      if (p.at > deadline) break; // insertion order: the rest are younger
      this.pending.delete(id);
      this.pool.fail(p, ErrorCode.TIMEOUT, `backend did not answer within ${this.o.requestTimeoutMs} ms`);
    }
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let socket: Socket;
    try {
      socket = await this.connector.connect(this.o.host, this.o.port, { timeoutMs: this.o.connectTimeoutMs });
    } catch (e) {
      this.o.log.warn(
        { backend: this.where(), err: (e as Error).message, attempt: this.attempt },
        'backend connect failed',
      );
      if (this.attempt === 0)
        this.o.events.emit({
          kind: 'upstream-failure',
          listener: this.o.listener,
          protocol: 'tunnel',
          server: this.where(),
          action: 'error',
          reason: (e as Error).message,
        });
      this.retry();
      return;
    }
    if (this.stopped) {
      socket.destroy();
      return;
    }
    this.attempt = 0;
    this.socket = socket;
    socket.setNoDelay(true);
    const decoder = new FrameDecoder({ maxPayload: this.o.maxPayload });
    this.writer = new FrameWriter(writeThrough(socket));
    this.heartbeat = new Heartbeat(
      this.o.heartbeatIntervalMs,
      this.o.heartbeatTimeoutMs,
      () => this.writer?.push(FrameType.PING, 0),
      () => this.lost(socket, 'heartbeat-timeout', `backend silent for ${this.o.heartbeatTimeoutMs} ms`),
    ).start();
    socket.on('data', (chunk: Buffer) => {
      this.heartbeat!.seen();
      decoder.push(chunk);
      try {
        for (let f = decoder.next(); f; f = decoder.next()) {
          if (f.type === FrameType.RESPONSE || f.type === FrameType.ERROR) {
            const p = this.pending.get(f.id);
            if (!p) continue; // timed out already, or the id is bogus: nobody waits for it
            this.pending.delete(f.id);
            if (f.type === FrameType.RESPONSE) this.pool.respond(p, f.payload);
            else {
              const err = decodeErrorPayload(f.payload);
              this.pool.fail(p, err.code, `backend: ${err.message}`);
            }
          } else if (f.type === FrameType.PING) this.writer!.push(FrameType.PONG, f.id, f.payload);
          else if (f.type === FrameType.GOAWAY) socket.end();
        }
      } catch (e) {
        this.lost(socket, 'frame-error', `backend sent an invalid frame: ${(e as Error).message}`);
      }
    });
    socket.on('error', () => {});
    // The connector allows half-open sockets (splices need them); here a FIN from the backend means
    // it is going away. Without this the socket would stay "ready", requests written to it would
    // only be noticed as lost at a later write's EPIPE, perhaps a heartbeat later.
    socket.once('end', () => this.lost(socket, null, 'backend closed the connection'));
    socket.once('close', () => this.lost(socket, null, 'backend connection closed'));
    this.ready = true;
    this.o.log.info({ backend: this.where() }, 'backend connection up');
    this.pool.connectionReady();
  }

  private lost(socket: Socket, kind: string | null, reason: string): void {
    // A late 'close' of a connection already replaced by a reconnect must not touch the new one.
    if (this.socket !== socket) return;
    this.socket = null;
    this.ready = false;
    this.writer = null;
    this.heartbeat?.stop();
    socket.destroy();
    if (kind)
      this.o.events.emit({
        kind,
        listener: this.o.listener,
        protocol: 'tunnel',
        server: this.where(),
        action: 'error',
        reason,
      });
    const inflight = [...this.pending.values()];
    this.pending.clear();
    for (const p of inflight)
      this.pool.fail(
        p,
        ErrorCode.BACKEND_LOST,
        `${reason} before answering; the request may or may not have been processed`,
      );
    if (!this.stopped) {
      this.o.log.warn({ backend: this.where(), reason, failed: inflight.length }, 'backend connection lost');
      this.retry();
    }
  }

  private retry(): void {
    if (this.stopped) return;
    const base = Math.min(this.o.backoffMaxMs, this.o.backoffMinMs * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    // Full jitter halves the thundering herd when a restarted backend comes back to many gateways.
    const delay = base / 2 + Math.random() * (base / 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
    this.timer.unref();
  }

  private where(): string {
    return formatHostPort(this.o.host, this.o.port);
  }
}

export class BackendPool {
  private readonly conns: BackendConnection[];
  private queue: Queued[] = [];
  private rr = 0;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(private readonly o: BackendPoolOptions) {
    const connector = new UpstreamFirstConnector({ timeoutMs: o.connectTimeoutMs });
    this.conns = Array.from(
      { length: Math.max(1, o.connections) },
      () => new BackendConnection(this, o, connector),
    );
  }

  start(): this {
    for (const c of this.conns) c.start();
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(50, this.o.requestTimeoutMs / 4)));
    this.sweeper.unref();
    return this;
  }

  /** Connections currently up (readiness, tests). */
  get readyConnections(): number {
    let n = 0;
    for (const c of this.conns) if (c.ready) n++;
    return n;
  }

  /** Forwards one request. `payload` is copied into the backend's write batch before this returns. */
  forward(origin: RequestOrigin, clientId: number, payload: Buffer): void {
    const conn = this.pick();
    const p: Pending = { origin, clientId, at: Date.now() };
    if (conn) {
      conn.send(p, payload);
      return;
    }
    if (this.queue.length >= this.o.queueLimit) {
      origin.fail(clientId, ErrorCode.BACKEND_UNAVAILABLE, 'backend unavailable and the wait queue is full');
      return;
    }
    this.queue.push({ ...p, payload: Buffer.from(payload) });
  }

  respond(p: Pending, payload: Buffer): void {
    if (!p.origin.closed) p.origin.respond(p.clientId, payload);
  }

  fail(p: Pending, code: number, message: string): void {
    if (!p.origin.closed) p.origin.fail(p.clientId, code, message);
  }

  /** A connection came up: send what waited for it. */
  connectionReady(): void {
    const waiting = this.queue;
    this.queue = [];
    for (const q of waiting) {
      if (q.origin.closed) continue;
      const conn = this.pick();
      if (conn) conn.send(q, q.payload);
      else this.queue.push(q);
    }
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const q of this.queue) this.fail(q, ErrorCode.SHUTTING_DOWN, 'gateway shutting down');
    this.queue = [];
    for (const c of this.conns) c.stop();
  }

  /**
   * Round-robin per tick, not per request: every request forwarded in one tick goes to the same
   * connection, so it leaves in one write (one syscall, one read at the backend) instead of being
   * spread thinly over the pool; the next tick moves on to the next connection.
   */
  private pick(): BackendConnection | null {
    if (this.sticky?.ready) return this.sticky;
    const n = this.conns.length;
    for (let i = 0; i < n; i++) {
      const c = this.conns[(this.rr + i) % n]!;
      if (c.ready) {
        this.rr = (this.rr + i + 1) % n;
        this.sticky = c;
        process.nextTick(this.unstick);
        return c;
      }
    }
    return null;
  }

  private sticky: BackendConnection | null = null;
  private readonly unstick = () => {
    this.sticky = null;
  };

  private sweep(): void {
    const now = Date.now();
    for (const c of this.conns) c.sweep(now - this.o.requestTimeoutMs);
    const queueDeadline = now - this.o.queueTimeoutMs;
    if (this.queue.length && this.queue[0]!.at <= queueDeadline) {
      const keep: Queued[] = [];
      for (const q of this.queue) {
        if (q.at > queueDeadline) keep.push(q);
        else
          this.fail(
            q,
            ErrorCode.BACKEND_UNAVAILABLE,
            `no backend connection within ${this.o.queueTimeoutMs} ms`,
          );
      }
      this.queue = keep;
    }
  }
}
