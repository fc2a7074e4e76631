/**
 * An in-process application backend for message-mode tests and the bench: speaks the backend side of
 * the tunnel protocol (frames without MAC), answers each REQUEST with `handler(payload)` (default:
 * echo), answers PING with PONG unless told to play dead, and records every request it received.
 * It can be stopped and restarted on the same port to simulate a backend restart.
 */
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { FrameDecoder, FrameType, FrameWriter } from '../../src/protocols/tunnel/frame.js';

export interface BackendOptions {
  handler?: (payload: Buffer) => Buffer;
  /** Keep requests (copies) in `received`; off for the bench. */
  record?: boolean;
}

export class TestBackend {
  readonly received: Buffer[] = [];
  /** Connections accepted over the backend's whole life (across restarts). */
  accepted = 0;
  /** When true, PINGs go unanswered and requests are swallowed (a hung backend). */
  silent = false;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly o: BackendOptions = {}) {}

  async start(port = this.port): Promise<this> {
    const server = createServer((s) => this.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  get connections(): number {
    return this.sockets.size;
  }

  /** Closes the listener and every connection abruptly (a crash, as far as the gateway can tell). */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private onConnection(s: Socket): void {
    this.accepted++;
    this.sockets.add(s);
    s.setNoDelay(true);
    s.on('error', () => {});
    s.once('close', () => this.sockets.delete(s));
    const decoder = new FrameDecoder({ maxPayload: 16 * 1024 * 1024 });
    const writer = new FrameWriter((b) => s.write(b));
    s.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      try {
        for (let f = decoder.next(); f; f = decoder.next()) {
          if (this.silent) continue;
          if (f.type === FrameType.REQUEST) {
            if (this.o.record) this.received.push(Buffer.from(f.payload));
            writer.push(FrameType.RESPONSE, f.id, this.o.handler ? this.o.handler(f.payload) : f.payload);
          } else if (f.type === FrameType.PING) writer.push(FrameType.PONG, f.id, f.payload);
        }
      } catch {
        s.destroy();
      }
    });
  }
}
