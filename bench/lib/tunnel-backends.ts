/**
 * Backends for bench/tunnel.ts, in their own process so the bench client's CPU is its own:
 * - a "count" server for stream mode: reads until the client's FIN, answers the byte count as text,
 *   closes (throughput: many MB then FIN; connection rate: one byte then FIN);
 * - a message-mode backend speaking the tunnel's backend protocol (frames without MAC), echoing each
 *   request as its response.
 * Prints one JSON line with both ports, then runs until killed.
 */
import { type AddressInfo, createServer } from 'node:net';
import { TestBackend } from '../../test/helpers/tunnel-backend.js';

const count = createServer({ allowHalfOpen: true }, (s) => {
  let n = 0;
  s.on('data', (d: Buffer) => {
    n += d.length;
  });
  s.on('end', () => s.end(String(n)));
  s.on('error', () => {});
});
await new Promise<void>((r) => count.listen(0, '127.0.0.1', () => r()));
const message = await new TestBackend().start();
process.stdout.write(
  `${JSON.stringify({ count: (count.address() as AddressInfo).port, message: message.port })}\n`,
);
