/**
 * Runs INSIDE the test's network namespace (spawned by transparent-redirect.test.ts through
 * `ip netns exec`): a scangate listener on LISTEN_HOST:LISTEN_PORT answers each connection with the
 * original destination it reads from SO_ORIGINAL_DST; then clients dial each address in DIAL (redirected by
 * the namespace's iptables rules, or not) and the results are printed as one JSON line.
 */
import { type AddressInfo, connect } from 'node:net';
import { silentLogger } from '../../src/logger.js';
import { createTcpListener } from '../../src/net/listener.js';
import { getOriginalDestination } from '../../src/net/original-dst.js';

const listenAt = process.env.LISTEN ?? '127.0.0.1:18080';
const dial = (process.env.DIAL ?? '').split(',').filter(Boolean);

const listener = await createTcpListener({
  name: 'transparent',
  listen: listenAt,
  allow: ['127.0.0.0/8', '::1/128'],
  maxConnections: 10,
  logger: silentLogger,
  onConnection: (s) => {
    s.on('error', () => {});
    s.end(
      `${JSON.stringify({ original: getOriginalDestination(s), local: `${s.localAddress}:${s.localPort}` })}\n`,
    );
  },
});

function ask(target: string): Promise<unknown> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target)!;
  return new Promise((resolve) => {
    const s = connect({ host: m[1], port: Number(m[2]) });
    let out = '';
    s.on('data', (d) => {
      out += d;
    });
    s.on('end', () => resolve(JSON.parse(out)));
    s.on('error', (e) => resolve({ error: e.message }));
  });
}

const results: Record<string, unknown> = {};
for (const target of dial) results[target] = await ask(target);
results.listener = listener.address as AddressInfo;
process.stdout.write(`${JSON.stringify(results)}\n`);
await listener.close(100);
