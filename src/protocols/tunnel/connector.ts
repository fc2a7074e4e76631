/**
 * The client end in stream mode (stunnel's `client = yes`): a local plain TCP port whose every
 * connection is carried to the gateway over mTLS. The gateway's certificate is verified against the
 * given CA and name (never optional); the local port is loopback-only unless told otherwise. The TLS
 * connection is made before the local one is used, and a failure resets the local connection, so a
 * local client sees the gateway being down as a refusal rather than an accept-then-drop.
 */
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { ConfigError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { createTcpListener, type TcpListener } from '../../net/listener.js';
import { resetConnection, splice } from '../../net/splice.js';
import { parseAddress } from '../../util/units.js';

export interface ConnectorOptions {
  /** Local address, host:port (port 0 picks one). */
  listen: string;
  /** The gateway, host:port. */
  server: string;
  cert: string;
  key: string;
  ca: string;
  /** Name the gateway's certificate must carry; default the server's host. */
  servername?: string;
  /** Local client networks allowed; default loopback. */
  allow?: string[];
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxConnections?: number;
  logger: Logger;
}

export interface RunningConnector {
  address: TcpListener['address'];
  close(deadlineMs?: number): Promise<void>;
}

export async function startTunnelConnector(o: ConnectorOptions): Promise<RunningConnector> {
  const server = parseAddress(o.server);
  if ('path' in server) throw new ConfigError('--server', 'expected host:port');
  const read = async (flag: string, path: string) => {
    try {
      return await readFile(path);
    } catch (e) {
      throw new ConfigError(flag, `cannot read ${path}: ${(e as Error).message}`);
    }
  };
  const [cert, key, ca] = await Promise.all([
    read('--cert', o.cert),
    read('--key', o.key),
    read('--ca', o.ca),
  ]);
  const servername = o.servername ?? server.host;
  const timeoutMs = o.connectTimeoutMs ?? 10_000;

  const dial = (): Promise<TLSSocket> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({
        host: server.host,
        port: server.port,
        servername,
        cert,
        key,
        ca,
        minVersion: 'TLSv1.2',
      });
      s.setNoDelay(true);
      const timer = setTimeout(
        () => s.destroy(new Error(`no TLS session within ${timeoutMs} ms`)),
        timeoutMs,
      );
      s.once('secureConnect', () => {
        clearTimeout(timer);
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });

  const listener = await createTcpListener({
    name: 'tunnel-connect',
    listen: o.listen,
    allow: o.allow,
    maxConnections: o.maxConnections ?? 10_000,
    logger: o.logger,
    onConnection: (local: Socket) => {
      local.on('error', () => {});
      local.pause();
      dial().then(
        (remote) => {
          remote.on('error', () => {});
          void splice(local, remote, { idleTimeoutMs: o.idleTimeoutMs ?? 0 });
        },
        (e: Error) => {
          o.logger.warn({ server: o.server, err: e.message }, 'tunnel connect: gateway unreachable; reset');
          resetConnection(local);
        },
      );
    },
  });
  return { address: listener.address, close: (d) => listener.close(d) };
}
