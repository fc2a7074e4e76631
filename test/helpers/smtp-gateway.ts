/**
 * Starts scangate's SMTP listener in-process for tests, with its own data folder, the real builtin
 * engine (or a given scanner), a TLS runtime that trusts the test origin CA, and an event sink; and
 * runs swaks against it.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type SmtpListenerConfig } from '../../src/config/schema.js';
import type { Scanner } from '../../src/engine/types.js';
import { silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { startSmtpListener } from '../../src/protocols/smtp/index.js';
import { createTlsRuntime } from '../../src/tls/runtime.js';

export interface GatewayUnderTest {
  port: number;
  /** PEM file of scangate's CA (what clients must trust for the client leg). */
  caFile: string;
  events: MemoryEventSink;
  service: RunningService;
  close(): Promise<void>;
}

export async function startSmtpGateway(o: {
  dir: string;
  scanner: Scanner;
  /** PEM files of roots trusted for the upstream leg. */
  upstreamCa?: string[];
  listener: Record<string, unknown>;
  engine?: Record<string, unknown>;
  logger?: import('../../src/logger.js').Logger;
  messagePolicies?: import('../../src/protocols/smtp/policy.js').MessagePolicy[];
}): Promise<GatewayUnderTest> {
  const config = configSchema.parse({
    dataDir: o.dir,
    ...(o.engine ? { engine: o.engine } : {}),
    tls: { upstream: { ca: o.upstreamCa ?? [] } },
    listeners: [{ name: 'mail', protocol: 'smtp', listen: '127.0.0.1:0', ...o.listener }],
  });
  const events = new MemoryEventSink();
  const logger = o.logger ?? silentLogger;
  const tls = await createTlsRuntime(config, logger, events);
  const service = await startSmtpListener(config.listeners[0] as SmtpListenerConfig, {
    config,
    scanner: o.scanner,
    logger,
    events,
    tls,
    ...(o.messagePolicies ? { messagePolicies: o.messagePolicies } : {}),
  });
  const caFile = join(o.dir, 'scangate-ca.pem');
  writeFileSync(caFile, tls.ca.certPem);
  return {
    port: (service.address as AddressInfo).port,
    caFile,
    events,
    service,
    close: () => service.close(1000),
  };
}

export interface SwaksResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs swaks (asynchronously: the servers it talks to live in this process). */
export function swaks(bin: string, args: string[], timeoutMs = 60_000): Promise<SwaksResult> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Content with the gateway's X-Scangate-* header lines (always prepended) taken off the top. */
export function withoutScangateHeaders(data: Buffer): { headers: string[]; rest: Buffer } {
  const headers: string[] = [];
  let pos = 0;
  for (;;) {
    const end = data.indexOf('\r\n', pos);
    if (end < 0) break;
    const line = data.subarray(pos, end).toString('latin1');
    if (!/^X-Scangate-[A-Za-z-]+:/i.test(line)) break;
    headers.push(line);
    pos = end + 2;
  }
  return { headers, rest: data.subarray(pos) };
}

export interface RawReply {
  code: number;
  text: string;
}

/**
 * A hand-driven SMTP client over a raw socket, for what real clients never do: pipelining past
 * STARTTLS, bare LF, 10 MB lines. Replies are read line by line (multi-line joined with \n).
 */
export class RawSmtpClient {
  private buf = '';
  private closed = false;
  private waiter: (() => void) | null = null;
  private socket: import('node:net').Socket | import('node:tls').TLSSocket;

  private constructor(socket: import('node:net').Socket) {
    this.socket = socket;
    this.listen(socket);
  }

  static async connect(port: number): Promise<RawSmtpClient> {
    const { connect } = await import('node:net');
    const s = connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    const c = new RawSmtpClient(s);
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    });
    return c;
  }

  private listen(s: import('node:net').Socket | import('node:tls').TLSSocket): void {
    s.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      this.waiter?.();
    });
    s.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Next complete reply; null when the connection closed first. */
  async reply(timeoutMs = 10_000): Promise<RawReply | null> {
    const deadline = Date.now() + timeoutMs;
    const lines: string[] = [];
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        lines.push(line.slice(4));
        if (line[3] !== '-') return { code: Number(line.slice(0, 3)), text: lines.join('\n') };
        continue;
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no reply within ${timeoutMs} ms (buffer ${JSON.stringify(this.buf.slice(0, 100))})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  async command(line: string): Promise<RawReply | null> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** TLS client handshake on the current socket (after a 220 to STARTTLS). */
  async startTls(ca: string): Promise<void> {
    const { connect } = await import('node:tls');
    const raw = this.socket as import('node:net').Socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    this.buf = '';
    const t = connect({ socket: raw, ca, checkServerIdentity: () => undefined });
    t.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      t.once('secureConnect', () => resolve());
      t.once('error', reject);
    });
    this.socket = t;
    this.listen(t);
  }

  close(): void {
    this.socket.destroy();
  }
}
