/**
 * Runs INSIDE the gateway's network namespace (spawned by transparent-netns.test.ts through
 * `ip netns exec`): the origin servers the client believes it talks to, HTTPS on ADDR:443 with the
 * certificate in CERT/KEY and plain HTTP on ADDR:80 (test/integration/http-origin.ts routes). Prints
 * {"ready":true} once both listen, then one {"request":…} line per request that reached it, so the
 * test can tell what got through the gateway.
 */
import { readFileSync } from 'node:fs';
import { startOrigin } from '../integration/http-origin.js';

const host = process.env.ADDR ?? '192.0.2.10';
const report = (request: unknown) => process.stdout.write(`${JSON.stringify({ request })}\n`);
const tls = { cert: readFileSync(process.env.CERT!), key: readFileSync(process.env.KEY!) };
const secure = await startOrigin({ host, port: 443, tls, onRequest: report });
const plain = await startOrigin({ host, port: 80, onRequest: report });
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);

// The test ends us with SIGTERM (or closes our stdin when it dies first).
const stop = async () => {
  await Promise.all([secure.close(), plain.close()]);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop).resume();
