/**
 * Message mode, one client connection: frames in, each verified (MAC keyed from this TLS session)
 * before its request is forwarded to the backend pool; answers routed back as MAC'd frames. The first
 * bad frame (garbage, oversized, wrong MAC, wrong direction) ends the connection: a GOAWAY naming the
 * problem, an event, and the bytes of that frame and everything after it are never forwarded.
 *
 * Backpressure: past `maxInFlight` unanswered requests, or when the client does not read its answers,
 * the gateway stops reading from the client until it catches up.
 */
import type { TLSSocket } from 'node:tls';
import type { RequestOrigin } from './backend-pool.js';
import { emitEvent, type TunnelContext } from './context.js';
import { ErrorCode, type Frame, FrameDecoder, FrameError, FrameType, FrameWriter } from './frame.js';
import { Heartbeat } from './heartbeat.js';
import type { ClientIdentity } from './identity.js';
import { sessionMacs } from './keys.js';

/** Written answers waiting in the socket above this make the session stop reading requests. */
const WRITE_HIGH_WATER = 4 * 1024 * 1024;
/** Time a closing connection gets to deliver its GOAWAY before it is destroyed. */
const CLOSE_GRACE_MS = 2_000;

export class MessageSession implements RequestOrigin {
  closed = false;
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private readonly heartbeat: Heartbeat;
  private inflight = 0;
  private paused = false;
  private draining = false;
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => {
    this.resolveDone = r;
  });

  constructor(
    private readonly ctx: TunnelContext,
    private readonly socket: TLSSocket,
    private readonly identity: ClientIdentity,
    private readonly client: string,
  ) {
    const macs = sessionMacs(socket);
    this.decoder = new FrameDecoder({ maxPayload: ctx.cfg.maxFrameSize, mac: macs.clientToGateway });
    this.writer = new FrameWriter((b) => {
      if (socket.destroyed) return false;
      socket.write(b);
      // Not on every `false` from write(): a batch bigger than the 16 KB high-water mark returns
      // false, and pausing/resuming the socket on every batch costs two epoll updates each time.
      if (socket.writableLength > WRITE_HIGH_WATER && !this.paused) this.pause();
      return socket.writableLength === 0; // written at once: the writer may reuse its slab
    }, macs.gatewayToClient);
    this.heartbeat = new Heartbeat(
      ctx.cfg.heartbeat.interval,
      ctx.cfg.heartbeat.timeout,
      () => this.writer.push(FrameType.PING, 0),
      () =>
        this.abort(
          'heartbeat-timeout',
          ErrorCode.HEARTBEAT_TIMEOUT,
          `no answer from the client for ${ctx.cfg.heartbeat.timeout} ms`,
        ),
    );
  }

  start(): void {
    const s = this.socket;
    s.setNoDelay(true);
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('drain', () => this.maybeResume());
    s.on('end', () => this.onEnd());
    s.on('error', () => {});
    s.once('close', () => this.onClose());
    this.heartbeat.start();
    this.ctx.shutdown.addEventListener('abort', this.onShutdown, { once: true });
  }

  respond(clientId: number, payload: Buffer): void {
    this.writer.push(FrameType.RESPONSE, clientId, payload);
    this.settled();
  }

  fail(clientId: number, code: number, message: string): void {
    this.writer.pushError(FrameType.ERROR, clientId, code, message);
    this.settled();
  }

  private settled(): void {
    this.inflight--;
    if (this.paused) this.maybeResume();
    if (this.draining && this.inflight === 0) this.closeGracefully(ErrorCode.NONE, 'done');
  }

  private onData(chunk: Buffer): void {
    this.heartbeat.seen();
    this.decoder.push(chunk);
    this.pump();
  }

  /** Handles decoded frames until the decoder needs bytes or the session pauses. */
  private pump(): void {
    try {
      while (!this.paused && !this.closed && !this.draining) {
        const f = this.decoder.next();
        if (!f) return;
        this.handle(f);
      }
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      this.abort('frame-error', e.wireCode, `${e.code}: ${e.message}`);
    }
  }

  private handle(f: Frame): void {
    switch (f.type) {
      case FrameType.REQUEST:
        this.inflight++;
        if (this.ctx.cfg.scan) void this.scanThenForward(f.id, Buffer.from(f.payload));
        else this.ctx.pool!.forward(this, f.id, f.payload);
        if (this.inflight >= this.ctx.cfg.maxInFlight) this.pause();
        return;
      case FrameType.PING:
        this.writer.push(FrameType.PONG, f.id, f.payload);
        return;
      case FrameType.PONG:
        return;
      case FrameType.GOAWAY:
        // The client is done: answer what is in flight, then close.
        this.draining = true;
        if (this.inflight === 0) this.closeGracefully(ErrorCode.NONE, 'done');
        return;
      default:
        this.abort(
          'frame-error',
          ErrorCode.UNEXPECTED_FRAME,
          `unexpected frame type ${f.type} from a client`,
        );
    }
  }

  private async scanThenForward(id: number, payload: Buffer): Promise<void> {
    const verdict = await this.ctx.scanner.scan(payload, { name: `request ${id}` });
    if (this.closed) return;
    if (verdict.status === 'clean') {
      this.ctx.pool!.forward(this, id, payload);
      return;
    }
    if (verdict.status === 'infected') {
      emitEvent(this.ctx, {
        kind: 'verdict',
        action: 'blocked',
        reason: 'infected',
        client: this.client,
        object: `request ${id} from ${this.identity.cn[0] ?? '-'}`,
        signature: verdict.signature,
      });
      this.fail(id, ErrorCode.INFECTED, `infected: ${verdict.signature}`);
      return;
    }
    emitEvent(this.ctx, {
      kind: 'scan-error',
      action: 'error',
      reason: verdict.reason,
      client: this.client,
      object: `request ${id}`,
    });
    this.fail(id, ErrorCode.SCAN_FAILED, `scan failed: ${verdict.reason}`);
  }

  private pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  private maybeResume(): void {
    if (!this.paused || this.closed) return;
    if (this.inflight >= this.ctx.cfg.maxInFlight || this.socket.writableLength > WRITE_HIGH_WATER) return;
    this.paused = false;
    this.pump();
    if (!this.paused) this.socket.resume();
  }

  private onEnd(): void {
    if (this.closed) return; // already closing after a bad frame or a timeout; that was reported
    try {
      this.decoder.end();
    } catch (e) {
      this.event('frame-error', (e as FrameError).code);
      this.socket.destroy();
      return;
    }
    // A clean FIN: answer what is in flight, then close our side.
    this.draining = true;
    if (this.inflight === 0) this.closeGracefully(ErrorCode.NONE, 'done');
  }

  private readonly onShutdown = () => {
    this.draining = true;
    if (this.inflight === 0) this.closeGracefully(ErrorCode.SHUTTING_DOWN, 'gateway shutting down');
  };

  /** A protocol failure: GOAWAY naming it, an event, then close (never forwarding the bad frame). */
  private abort(kind: string, code: number, reason: string): void {
    if (this.closed) return;
    this.event(kind, reason);
    this.closeGracefully(code, reason);
  }

  private closeGracefully(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.heartbeat.stop();
    this.writer.pushError(FrameType.GOAWAY, 0, code, reason);
    this.writer.flush();
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    t.unref();
  }

  private event(kind: string, reason: string): void {
    emitEvent(this.ctx, {
      kind,
      action: 'rejected',
      reason,
      client: this.client,
      object: this.identity.cn[0] ?? this.identity.uri[0],
    });
  }

  private onClose(): void {
    this.closed = true;
    this.heartbeat.stop();
    this.ctx.shutdown.removeEventListener('abort', this.onShutdown);
    this.resolveDone();
  }
}
