/**
 * Starts scangate's FTP listener in-process (own data folder, a TLS runtime trusting the test origin
 * CA, an event sink) and runs the Debian FTP clients (curl, lftp) against it asynchronously — the
 * gateway lives in this process, so a synchronous child would block it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import pino from 'pino';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type FtpListenerConfig } from '../../src/config/schema.js';
import type { Scanner } from '../../src/engine/types.js';
import { type Logger, silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { startFtpListener } from '../../src/protocols/ftp/index.js';
import { createTlsRuntime } from '../../src/tls/runtime.js';
import { type SwaksResult, swaks } from './smtp-gateway.js';

export interface FtpGatewayUnderTest {
  port: number;
  /** PEM file of scangate's CA (what clients must trust for the client leg). */
  caFile: string;
  events: MemoryEventSink;
  service: RunningService;
  close(): Promise<void>;
}

export async function startFtpGateway(o: {
  dir: string;
  scanner: Scanner;
  upstreamCa?: string[];
  listener: Record<string, unknown>;
  engine?: Record<string, unknown>;
  logger?: Logger;
}): Promise<FtpGatewayUnderTest> {
  const config = configSchema.parse({
    dataDir: o.dir,
    ...(o.engine ? { engine: o.engine } : {}),
    tls: { upstream: { ca: o.upstreamCa ?? [] } },
    listeners: [{ name: 'files', protocol: 'ftp', listen: '127.0.0.1:0', ...o.listener }],
  });
  const events = new MemoryEventSink();
  const logger = o.logger ?? silentLogger;
  const tls = await createTlsRuntime(config, logger, events);
  const service = await startFtpListener(config.listeners[0] as FtpListenerConfig, {
    config,
    scanner: o.scanner,
    logger,
    events,
    tls,
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

/**
 * startFtpGateway in front of a test vsftpd (helpers/ftp-vsftpd.ts): its address as the upstream,
 * its CA trusted for the server leg, the TLS styles and data ports given, then `listener` settings.
 */
export function startFtpGatewayFor(
  vs: { port: number; caFile: string },
  o: {
    dir: string;
    scanner: Scanner;
    tls: { client: string; upstream: string };
    passivePorts: string;
    listener?: Record<string, unknown>;
    logger?: Logger;
  },
): Promise<FtpGatewayUnderTest> {
  return startFtpGateway({
    dir: o.dir,
    scanner: o.scanner,
    upstreamCa: [vs.caFile],
    listener: { upstream: `127.0.0.1:${vs.port}`, tls: o.tls, passivePorts: o.passivePorts, ...o.listener },
    ...(o.logger ? { logger: o.logger } : {}),
  });
}

/** A logger that keeps the gateway's log lines (pino JSON, one entry per element). */
export function capturingLogger(lines: string[], level = 'info'): Logger {
  return pino(
    { level },
    new Writable({
      write(chunk, _e, cb) {
        lines.push(chunk.toString());
        cb();
      },
    }),
  ) as unknown as Logger;
}

/** The generic child runner of the SMTP helper (it runs any program, not only swaks). */
export function runClient(bin: string, args: string[], timeoutMs = 120_000): Promise<SwaksResult> {
  return swaks(bin, args, timeoutMs);
}

export type DataMode = 'pasv' | 'epsv' | 'port' | 'eprt';

/**
 * curl arguments for one transfer. `tls`: what the client leg speaks ('explicit' → ftp:// with
 * --ssl-reqd, 'implicit' → ftps://, 'none' → plain).
 */
export function curlArgs(o: {
  port: number;
  tls: 'explicit' | 'implicit' | 'none';
  mode: DataMode;
  caFile: string;
  path: string;
}): string[] {
  const scheme = o.tls === 'implicit' ? 'ftps' : 'ftp';
  const mode =
    o.mode === 'pasv'
      ? ['--disable-epsv']
      : o.mode === 'epsv'
        ? []
        : o.mode === 'port'
          ? ['--ftp-port', '-', '--disable-eprt']
          : ['--ftp-port', '-'];
  return [
    '-sS',
    '--max-time',
    '100',
    ...(o.tls === 'none' ? [] : ['--ssl-reqd', '--cacert', o.caFile]),
    ...mode,
    `${scheme}://127.0.0.1:${o.port}${o.path}`,
  ];
}

/** An lftp script prefix for the gateway: TLS settings and data mode. */
export function lftpSettings(o: {
  tls: 'explicit' | 'implicit' | 'none';
  mode: DataMode;
  caFile: string;
}): string {
  const passive = o.mode === 'pasv' || o.mode === 'epsv';
  const extended = o.mode === 'epsv' || o.mode === 'eprt';
  return [
    `set ftp:passive-mode ${passive ? 'on' : 'off'}`,
    `set ftp:prefer-epsv ${extended ? 'on' : 'off'}`,
    `set ftp:use-eprt ${extended ? 'on' : 'off'}`,
    'set ftp:port-ipv4 127.0.0.1',
    `set ftp:ssl-allow ${o.tls === 'none' ? 'no' : 'yes'}`,
    `set ftp:ssl-force ${o.tls === 'explicit' ? 'yes' : 'no'}`,
    `set ftp:ssl-protect-data ${o.tls === 'none' ? 'no' : 'yes'}`,
    `set ssl:ca-file ${o.caFile}`,
    'set ssl:verify-certificate yes',
    'set net:max-retries 1',
    'set net:timeout 60',
    'set cmd:fail-exit yes',
    '',
  ].join('; ');
}

/** A hand-driven FTP control connection (what real clients do not do on purpose): one reply at a time. */
export class FtpControl {
  private buf = '';
  private waiters: (() => void)[] = [];
  /** The control connection's latest TLS session (to resume on data connections). */
  session: Buffer | undefined;
  private constructor(private sock: Socket | TLSSocket) {
    this.listen(sock);
  }
  static async open(port: number): Promise<FtpControl> {
    const s = connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    return new FtpControl(s);
  }
  private listen(s: Socket): void {
    s.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      for (const w of this.waiters.splice(0)) w();
    });
    s.on('error', () => {});
  }
  /** After a 234: TLS on the control connection, trusting `caFile`. */
  async startTls(caFile: string): Promise<void> {
    const raw = this.sock as Socket;
    raw.removeAllListeners('data');
    const t = tlsConnect({ socket: raw, ca: readFileSync(caFile), checkServerIdentity: () => undefined });
    t.on('session', (s: Buffer) => {
      this.session = s;
    });
    await new Promise((resolve, reject) => {
      t.once('secureConnect', resolve);
      t.once('error', reject);
    });
    this.sock = t;
    this.listen(t);
  }
  send(line: string): Promise<void> {
    return this.sendRaw(Buffer.from(`${line}\r\n`, 'latin1'));
  }
  sendRaw(b: Buffer): Promise<void> {
    return new Promise((r) => this.sock.write(b, () => r()));
  }
  /** The next whole reply (multi-line included), as text. */
  async reply(): Promise<string> {
    for (;;) {
      const code = /^(\d{3})/.exec(this.buf)?.[1];
      const end = code ? new RegExp(`(^|\\r\\n)${code} [^\\r\\n]*\\r\\n`).exec(this.buf) : null;
      if (end) {
        const stop = end.index + end[0].length;
        const r = this.buf.slice(0, stop);
        this.buf = this.buf.slice(stop);
        return r;
      }
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no reply; have ${JSON.stringify(this.buf)}`)),
          20_000,
        );
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  close(): void {
    this.sock.destroy();
  }
}
