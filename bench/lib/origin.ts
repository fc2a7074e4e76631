/**
 * Benchmark origin: an HTTPS server in its own process serving /big (BIG_MB of random bytes from
 * memory) and /small (100 bytes). /big/N differs from /big in its first 16 bytes (N written there),
 * so every download is new content: the gateway's verdict cache cannot answer and the scan really
 * runs, each time. Prints {"port": N} when listening.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';

const [certPath, keyPath, bigMb] = process.argv.slice(2);
const big = randomBytes(Number(bigMb ?? 100) * 1024 * 1024);
const small = Buffer.alloc(100, 0x61);

const server = https.createServer(
  { cert: readFileSync(certPath!), key: readFileSync(keyPath!), keepAliveTimeout: 60_000 },
  (req, res) => {
    const unique = /^\/big\/(\d+)$/.exec(req.url ?? '');
    const body = unique || req.url === '/big' ? big : small;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    if (unique) {
      const prefix = Buffer.alloc(16);
      prefix.write(unique[1]!.padStart(16, '0'), 'latin1');
      res.write(prefix);
      res.end(body.subarray(16));
    } else res.end(body);
  },
);
server.maxConnections = 5000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
});
