/**
 * Helpers for tunnel interop tests: an echo backend (optionally reading a PROXY v2 header first), a
 * child-process runner that collects output, and a free-port picker for peers that need a fixed port.
 */
import { spawn } from 'node:child_process';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { decodeProxyV2, type Pp2Header } from '../../src/protocols/tunnel/proxy-v2.js';

export interface EchoBackend {
  port: number;
  /** PROXY v2 headers received, one per connection (when expectProxy). */
  headers: Pp2Header[];
  /** Connections accepted. */
  accepted: number;
  close(): Promise<void>;
}

/**
 * Echoes every byte back. With `endAfterLine`, ends its side after echoing a newline (so clients that
 * wait for the server to close, like `openssl s_client -quiet`, finish).
 */
export async function startEchoBackend(
  o: { expectProxy?: boolean; endAfterLine?: boolean } = {},
): Promise<EchoBackend> {
  const sockets = new Set<Socket>();
  const state: EchoBackend = { port: 0, headers: [], accepted: 0, close: async () => {} };
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    state.accepted++;
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
    let head: Buffer | null = o.expectProxy ? Buffer.alloc(0) : null;
    const echo = (b: Buffer) => {
      if (b.length) s.write(b);
      if (o.endAfterLine && b.includes(0x0a)) s.end();
    };
    s.on('data', (chunk: Buffer) => {
      if (head === null) return echo(chunk);
      head = Buffer.concat([head, chunk]);
      try {
        const r = decodeProxyV2(head);
        if (!r) return;
        state.headers.push(r.header);
        const rest = head.subarray(r.length);
        head = null;
        echo(rest);
      } catch {
        s.destroy();
      }
    });
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as AddressInfo).port;
  state.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return state;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program asynchronously (its peers live in this process), feeding `input`, bounded in time. */
export function runProgram(bin: string, args: string[], input = '', timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
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
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** A port that was free a moment ago (for peers that cannot listen on port 0 and report it). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
