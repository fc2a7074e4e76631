/**
 * Load client for the HTTPS benchmark, run as its own process so it never shares an event loop
 * with the proxy being measured. Talks HTTP/1.1 over TLS either directly to the origin or through
 * an explicit proxy (CONNECT, then TLS inside the tunnel).
 *
 * argv[2] is a JSON job: { mode: 'keepalive' | 'handshakes' | 'idle', origin: {host, port}, proxy?: {host, port},
 *   ca: PEM path, seconds, concurrency, connections (idle) } — prints one JSON result line.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

export interface Job {
  mode: 'keepalive' | 'handshakes' | 'idle';
  origin: { host: string; port: number };
  proxy?: { host: string; port: number };
  ca: string;
  seconds: number;
  concurrency: number;
  connections?: number;
}

const job = JSON.parse(process.argv[2]!) as Job;
const ca = readFileSync(job.ca, 'utf8');

function tunnel(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(job.proxy!.port, job.proxy!.host);
    s.once('error', reject);
    s.once('connect', () =>
      s.write(
        `CONNECT ${job.origin.host}:${job.origin.port} HTTP/1.1\r\nHost: ${job.origin.host}:${job.origin.port}\r\n\r\n`,
      ),
    );
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      if (!/^HTTP\/1\.[01] 200/.test(buf))
        return reject(new Error(`CONNECT refused: ${buf.split('\r\n')[0]}`));
      resolve(s);
    };
    s.on('data', onData);
  });
}

async function connectTls(): Promise<tls.TLSSocket> {
  const base = job.proxy ? { socket: await tunnel() } : { host: job.origin.host, port: job.origin.port };
  return new Promise((resolve, reject) => {
    const t = tls.connect({
      ...base,
      ca,
      servername: job.origin.host === '127.0.0.1' ? undefined : job.origin.host,
      ALPNProtocols: ['http/1.1'],
    });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
}

/** Sends GET /small and resolves when one complete response (Content-Length framed) arrived. */
function request(t: tls.TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const m = /content-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString('latin1'));
      const need = end + 4 + Number(m?.[1] ?? 0);
      if (buf.length < need) return;
      t.off('data', onData);
      t.off('error', reject);
      resolve();
    };
    t.on('data', onData);
    t.once('error', reject);
    t.write(`GET /small HTTP/1.1\r\nHost: ${job.origin.host}:${job.origin.port}\r\n\r\n`);
  });
}

async function keepalive(): Promise<number> {
  const deadline = Date.now() + job.seconds * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      const t = await connectTls();
      while (Date.now() < deadline) {
        await request(t);
        count++;
      }
      t.destroy();
    }),
  );
  return count / job.seconds;
}

async function handshakes(): Promise<number> {
  const deadline = Date.now() + job.seconds * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (Date.now() < deadline) {
        const t = await connectTls();
        await request(t);
        t.destroy();
        count++;
      }
    }),
  );
  return count / job.seconds;
}

/** Opens `connections` intercepted connections, completes one request on each, then holds them idle. */
async function idle(): Promise<void> {
  const socks: tls.TLSSocket[] = [];
  for (let i = 0; i < (job.connections ?? 1000); i += job.concurrency) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(job.concurrency, (job.connections ?? 1000) - i) }, async () => {
        const t = await connectTls();
        await request(t);
        return t;
      }),
    );
    socks.push(...batch);
  }
  process.stdout.write(`${JSON.stringify({ open: socks.length })}\n`);
  // Hold until the parent has measured and closes our stdin.
  process.stdin.resume();
  await new Promise((r) => process.stdin.once('end', r));
  for (const s of socks) s.destroy();
}

if (job.mode === 'idle') await idle();
else {
  const rate = job.mode === 'keepalive' ? await keepalive() : await handshakes();
  process.stdout.write(`${JSON.stringify({ rate })}\n`);
}
process.exit(0);
