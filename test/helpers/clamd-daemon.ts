/**
 * Daemons for the clamd-protocol tests and bench: Debian's clamd started on a private config and
 * database (unix socket + loopback TCP), scangate's clamd listener started in-process on the same
 * database, and a raw client that sends bytes and reads until the daemon closes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { MemoryEventSink } from '../../src/admin/events.js';
import { type ConfigInput, configSchema } from '../../src/config/schema.js';
import { ClamdScanner } from '../../src/engine/backends/clamd.js';
import type { Scanner } from '../../src/engine/types.js';
import { silentLogger } from '../../src/logger.js';
import { type ClamdService, startClamdListener } from '../../src/protocols/clamd/index.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export interface DebianClamd {
  sock: string;
  tcp: string;
  proc: ChildProcess;
  stop(): void;
}

/** Starts Debian's clamd on `dbDir`, waits until it answers PING (database loaded). */
export async function startDebianClamd(
  clamdBin: string,
  dir: string,
  dbDir: string,
  extra: string[] = [],
): Promise<DebianClamd> {
  mkdirSync(dir, { recursive: true });
  const sock = join(dir, 'clamd.sock');
  const port = await freePort();
  const conf = join(dir, 'clamd.conf');
  writeFileSync(
    conf,
    [
      'Foreground yes',
      `LocalSocket ${sock}`,
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `DatabaseDirectory ${dbDir}`,
      `LogFile ${join(dir, 'clamd.log')}`,
      `TemporaryDirectory ${dir}`,
      'User root',
      ...extra,
      '',
    ].join('\n'),
  );
  const proc = spawn(clamdBin, ['-c', conf], { stdio: 'ignore' });
  const probe = new ClamdScanner({ address: sock, connectTimeoutMs: 500, timeoutMs: 2000 });
  const until = Date.now() + 90_000;
  for (;;) {
    try {
      await probe.ping();
      break;
    } catch (e) {
      if (proc.exitCode !== null) throw new Error(`clamd exited (${proc.exitCode}); see ${dir}/clamd.log`);
      if (Date.now() > until) throw new Error(`clamd did not come up: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return { sock, tcp: `127.0.0.1:${port}`, proc, stop: () => proc.kill('SIGKILL') };
}

export interface ScangateClamd {
  service: ClamdService;
  events: MemoryEventSink;
  address: string;
}

/** scangate's clamd listener on `listen` (unix path or 127.0.0.1:0) over `scanner`. */
export async function startScangateClamd(
  scanner: Scanner,
  listener: Record<string, unknown> & { listen: string },
  config: ConfigInput = {},
): Promise<ScangateClamd> {
  const cfg = configSchema.parse({
    ...config,
    listeners: [{ name: 'clamd', protocol: 'clamd', ...listener }],
  });
  const events = new MemoryEventSink();
  const l = cfg.listeners[0]!;
  if (l.protocol !== 'clamd') throw new Error('not a clamd listener');
  const service = await startClamdListener(l, { config: cfg, scanner, logger: silentLogger, events });
  const a = service.address;
  const address = typeof a === 'string' ? a : `${a.address}:${a.port}`;
  return { service, events, address };
}

function connect(address: string): net.Socket {
  const m = /^(.*):(\d+)$/.exec(address);
  return m && !address.startsWith('/') ? net.connect(Number(m[2]), m[1]!) : net.connect(address);
}

/** Sends `data` (then optionally half-closes) and resolves with everything read until the daemon closes. */
export function exchange(
  address: string,
  data: Buffer | Buffer[],
  opts: { halfClose?: boolean; timeoutMs?: number } = {},
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect(address);
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close from ${address} within ${opts.timeoutMs ?? 30_000} ms`));
    }, opts.timeoutMs ?? 30_000);
    s.on('data', (d) => parts.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
    s.on('connect', () => {
      for (const d of Array.isArray(data) ? data : [data]) s.write(d);
      if (opts.halfClose) s.end();
    });
  });
}
