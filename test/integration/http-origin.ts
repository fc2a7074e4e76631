/**
 * In-process origins for the HTTP proxy tests: a plain and/or TLS web server with fixed routes
 * that records what reached it, a deterministic large-object generator (so client and server
 * agree on a 100 MB object's hash without holding it), and curl driven asynchronously (the proxy
 * runs in this process, so a synchronous child would stall it).
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { EICAR } from '../helpers/eicar.js';
import { selfSignedCert, TestCa, writePem } from '../helpers/pki.js';

/** `size` bytes of AES-CTR keystream: fast, deterministic, incompressible. */
export function bigStream(size: number, seed = 1): Readable {
  const key = Buffer.alloc(16, seed);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const block = Buffer.alloc(256 * 1024);
  let left = size;
  return new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, block.length);
      left -= n;
      this.push(cipher.update(block.subarray(0, n)));
    },
  });
}

export async function sha256Of(stream: NodeJS.ReadableStream): Promise<string> {
  const h = createHash('sha256');
  for await (const c of stream) h.update(c as Buffer);
  return h.digest('hex');
}

export interface OriginRecord {
  method: string;
  url: string;
  bodyBytes: number;
  containsEicar: boolean;
}

export interface Origin {
  server: Server;
  port: number;
  requests: OriginRecord[];
  /** Sockets accepted, to count connections. */
  connections: number;
  close(): Promise<void>;
}

function route(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const url = new URL(req.url ?? '/', 'http://x');
  switch (url.pathname) {
    case '/clean.txt':
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('hello, clean world\n');
      return;
    case '/eicar.com':
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': EICAR.length });
      res.end(EICAR);
      return;
    case '/eicar-chunked':
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.write(EICAR.subarray(0, 30));
      res.end(EICAR.subarray(30));
      return;
    case '/eicar.gz': {
      const z = gzipSync(Buffer.concat([Buffer.from('<html>'), EICAR]));
      res.writeHead(200, {
        'Content-Type': 'text/html',
        'Content-Encoding': 'gzip',
        'Content-Length': z.length,
      });
      res.end(z);
      return;
    }
    case '/eicar.br': {
      const z = brotliCompressSync(Buffer.concat([Buffer.from('<html>'), EICAR]));
      res.writeHead(200, {
        'Content-Type': 'text/html',
        'Content-Encoding': 'br',
        'Content-Length': z.length,
      });
      res.end(z);
      return;
    }
    case '/big': {
      const size = Number(url.searchParams.get('size') ?? 1024);
      const tail = url.searchParams.get('eicar') === '1';
      const headers: Record<string, string | number> = { 'Content-Type': 'application/octet-stream' };
      if (url.searchParams.get('chunked') !== '1')
        headers['Content-Length'] = size + (tail ? EICAR.length : 0);
      // eicarAt=N: EICAR after the first N bytes, the rest of `size` after it.
      const at = url.searchParams.get('eicarAt');
      if (at !== null) {
        if (url.searchParams.get('chunked') !== '1') headers['Content-Length'] = size + EICAR.length;
        res.writeHead(200, headers);
        const head = bigStream(Number(at));
        head.pipe(res, { end: false });
        head.on('end', () => {
          res.write(EICAR);
          bigStream(size - Number(at), 2).pipe(res);
        });
        return;
      }
      res.writeHead(200, headers);
      const s = bigStream(size);
      s.pipe(res, { end: !tail });
      if (tail) s.on('end', () => res.end(EICAR));
      return;
    }
    case '/upload':
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({ received: body.length, sha256: createHash('sha256').update(body).digest('hex') }),
      );
      return;
    case '/echo-headers':
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(req.rawHeaders));
      return;
    default:
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
  }
}

export async function startOrigin(
  opts: {
    tls?: { cert: string | Buffer; key: string | Buffer };
    host?: string;
    /** Default 0 (ephemeral). */
    port?: number;
    /** Told of each request as it completes (e.g. to report it from a child process). */
    onRequest?: (r: OriginRecord) => void;
  } = {},
): Promise<Origin> {
  const requests: OriginRecord[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    let bodyBytes = 0;
    const keep: Buffer[] = [];
    let kept = 0;
    let containsEicar = false;
    let carry = Buffer.alloc(0);
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
      const window = Buffer.concat([carry, c]);
      if (window.includes(EICAR.subarray(0, 40))) containsEicar = true;
      carry = window.subarray(Math.max(0, window.length - 40));
      if (kept < 1024 * 1024) {
        keep.push(c);
        kept += c.length;
      }
    });
    req.on('end', () => {
      const record = { method: req.method ?? '', url: req.url ?? '', bodyBytes, containsEicar };
      requests.push(record);
      opts.onRequest?.(record);
      route(req, res, Buffer.concat(keep));
    });
  };
  const server = opts.tls
    ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler)
    : createHttpServer(handler);
  server.keepAliveTimeout = 30_000;
  const origin: Origin = {
    server,
    port: 0,
    requests,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
  server.on(opts.tls ? 'secureConnection' : 'connection', () => {
    origin.connections++;
  });
  // WebSocket-style upgrade: answer 101 and echo everything back.
  server.on('upgrade', (_req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    if (head.length) socket.write(head);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  origin.port = (server.address() as AddressInfo).port;
  return origin;
}

export interface CurlResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

/** Runs curl without blocking the event loop; stdout kept unless `sink` consumes it. */
export function curl(
  bin: string,
  args: string[],
  opts: {
    sink?: (s: NodeJS.ReadableStream) => Promise<unknown>;
    timeoutMs?: number;
    /** A command that runs curl, e.g. ['setpriv', '--reuid', '65534', …]. */
    wrap?: string[];
  } = {},
): Promise<CurlResult & { sinkResult?: unknown }> {
  const t0 = performance.now();
  const argv = [bin, '-sS', '--max-time', String(Math.ceil((opts.timeoutMs ?? 60_000) / 1000)), ...args];
  const cmd = [...(opts.wrap ?? []), ...argv];
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  const sinkP = opts.sink ? opts.sink(child.stdout) : null;
  if (!opts.sink) child.stdout.on('data', (d: Buffer) => out.push(d));
  return new Promise((resolve) => {
    child.on('close', async (code) => {
      const sinkResult = sinkP ? await sinkP : undefined;
      resolve({ code, stdout: Buffer.concat(out), stderr: err, ms: performance.now() - t0, sinkResult });
    });
  });
}

/** Splits `curl -D -` output (headers then body) at the last head's end. */
export function splitHead(out: Buffer): { status: number; headers: string; body: Buffer } {
  let start = 0;
  let status = 0;
  let headers = '';
  for (;;) {
    const end = out.indexOf('\r\n\r\n', start);
    if (end < 0) break;
    const text = out.toString('latin1', start, end);
    const m = /^HTTP\/[\d.]+ (\d{3})/.exec(text);
    if (!m) break;
    status = Number(m[1]);
    headers = text;
    start = end + 4;
    // curl prints the CONNECT 200 and interim heads before the final one.
    if (status >= 200 && !/^HTTP\/[\d.]+ 200 Connection established/i.test(text)) break;
  }
  return { status, headers, body: out.subarray(start) };
}

/** Origin-side PKI for these tests, over test/helpers/pki.ts: a CA file to trust and server certificates. */
export interface TestPki {
  caFile: string;
  caPem: string;
  caName: string;
  server(names: string[], opts?: { expired?: boolean }): Promise<{ cert: string; key: string }>;
  selfSigned(names: string[]): Promise<{ cert: string; key: string }>;
}

export async function createTestPki(dir: string): Promise<TestPki> {
  const caName = 'scangate test origin CA';
  const ca = await TestCa.create(caName);
  const day = 86_400_000;
  return {
    caFile: writePem(dir, 'origin-ca.pem', ca.certPem),
    caPem: ca.certPem,
    caName,
    async server(names, opts = {}) {
      const past = opts.expired
        ? { notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) }
        : {};
      const c = await ca.issue({ dnsNames: names, ...past });
      return { cert: c.chainPem, key: c.keyPem };
    },
    async selfSigned(names) {
      const c = await selfSignedCert({ dnsNames: names });
      return { cert: c.certPem, key: c.keyPem };
    },
  };
}

/**
 * A TCP port on 127.0.0.1 where nothing listens. Port 1 (tcpmux) is preferred: a port freed a moment
 * ago can be handed out again as an ephemeral port under a parallel test load, and a connect to it
 * then hangs or succeeds instead of being refused.
 */
export async function closedPort(): Promise<number> {
  const refused = await new Promise<boolean>((resolve) => {
    const s = connect(1, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
  if (refused) return 1;
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}
