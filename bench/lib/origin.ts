/**
 * Benchmark origin: an HTTPS server in its own process serving /big (BIG_MB of random bytes, the
 * same bytes every time, from memory) and /small (100 bytes). Prints {"port": N} when listening.
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
    const body = req.url === '/big' ? big : small;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  },
);
server.maxConnections = 5000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 })}\n`);
});
