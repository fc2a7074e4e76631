/**
 * HTTPS through scangate's explicit proxy without curl, for tests that run a hundred downloads at
 * once: CONNECT, TLS inside the tunnel (trusting scangate's CA), one GET with Connection: close,
 * the whole response read and split into status, headers and body.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { type AddressInfo, connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createTestPki } from '../integration/http-origin.js';

export interface ProxiedResponse {
  status: number;
  headers: string;
  body: Buffer;
}

export async function getViaProxy(o: {
  proxyPort: number;
  host: string;
  port: number;
  path: string;
  ca: string;
  timeoutMs?: number;
}): Promise<ProxiedResponse> {
  const raw = connect(o.proxyPort, '127.0.0.1');
  raw.setTimeout(o.timeoutMs ?? 60_000, () => raw.destroy(new Error('timeout')));
  await new Promise<void>((resolve, reject) => {
    raw.once('error', reject);
    raw.once('connect', () => {
      raw.write(`CONNECT ${o.host}:${o.port} HTTP/1.1\r\nHost: ${o.host}:${o.port}\r\n\r\n`);
    });
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      raw.off('data', onData);
      raw.off('error', reject);
      if (!/^HTTP\/1\.[01] 200/.test(head))
        return reject(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`));
      resolve();
    };
    raw.on('data', onData);
  });
  const tls = tlsConnect({ socket: raw, servername: o.host, ca: o.ca });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', () =>
      tls.write(`GET ${o.path} HTTP/1.1\r\nHost: ${o.host}:${o.port}\r\nConnection: close\r\n\r\n`),
    );
    tls.on('data', (d: Buffer) => chunks.push(d));
    tls.once('end', () => resolve());
    tls.once('error', reject);
    raw.once('error', reject);
    // A socket destroyed without a FIN or an error (timeout) must not leave the caller waiting.
    tls.once('close', () => resolve());
  });
  tls.destroy();
  const all = Buffer.concat(chunks);
  const end = all.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no response head (${all.length} bytes)`);
  const headers = all.toString('latin1', 0, end);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(headers)?.[1] ?? 0);
  return { status, headers, body: all.subarray(end + 4) };
}

/** An HTTPS origin on 127.0.0.1 with a certificate for `localhost` from a fresh test CA (caFile). */
export async function startTestOrigin(
  dir: string,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; port: number; caFile: string; close(): Promise<void> }> {
  const pki = await createTestPki(dir);
  const cert = await pki.server(['localhost']);
  const server = createServer({ cert: cert.cert, key: cert.key }, handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    caFile: pki.caFile,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
