/**
 * `scangate tunnel connect`: the client end of the mTLS gateway in stream mode — a local plain TCP
 * port carried to the gateway over mutual TLS (stunnel's client mode). Runs until SIGTERM/SIGINT.
 */
import type { Command } from 'commander';
import { createLogger } from '../logger.js';
import { startTunnelConnector } from '../protocols/tunnel/connector.js';
import { parseDuration } from '../util/units.js';

interface ConnectOptions {
  listen: string;
  server: string;
  cert: string;
  key: string;
  ca: string;
  servername?: string;
  allow?: string[];
  connectTimeout: string;
  idleTimeout: string;
}

export function registerTunnel(program: Command): void {
  const tunnel = program.command('tunnel').description('client end of the mTLS long-connection gateway');
  tunnel
    .command('connect')
    .description('expose a local plain TCP port carried to the gateway over mutual TLS (stream mode)')
    .requiredOption('--listen <host:port>', 'local address to accept plain TCP on, e.g. 127.0.0.1:9000')
    .requiredOption('--server <host:port>', 'the scangate tunnel listener')
    .requiredOption('--cert <file>', 'client certificate (PEM)')
    .requiredOption('--key <file>', 'client private key (PEM)')
    .requiredOption('--ca <file>', "CA bundle the gateway's certificate must chain to (PEM)")
    .option('--servername <name>', "name the gateway's certificate must carry (default: the --server host)")
    .option('--allow <cidr...>', 'local client networks allowed (default loopback only)')
    .option('--connect-timeout <duration>', 'TCP connect + TLS handshake deadline', '10s')
    .option('--idle-timeout <duration>', 'close a connection idle this long (0: never)', '12h')
    .action(async (opts: ConnectOptions) => {
      const logger = createLogger({ level: 'info', destination: 2 });
      const c = await startTunnelConnector({
        listen: opts.listen,
        server: opts.server,
        cert: opts.cert,
        key: opts.key,
        ca: opts.ca,
        servername: opts.servername,
        allow: opts.allow,
        connectTimeoutMs: parseDuration(opts.connectTimeout),
        idleTimeoutMs: parseDuration(opts.idleTimeout),
        logger,
      });
      const a = c.address;
      const where =
        typeof a === 'string' ? a : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
      process.stdout.write(
        `scangate: tunnel connect listening on ${where}, forwarding to ${opts.server} over mTLS\n`,
      );
      const stop = () => {
        void c.close(5_000).then(() => process.exit(0));
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
