/**
 * A TCP (or unix-socket) listener with the discipline every scangate service needs: an allow-list of
 * client networks (default loopback only, so a default config is never an open proxy), a cap on
 * concurrent connections, refusals that look like refusals (RST, logged), and a close() that drains
 * existing connections until a deadline.
 */

import cluster from 'node:cluster';
import { rm } from 'node:fs/promises';
import { type AddressInfo, BlockList, createServer, isIP, type Server, type Socket } from 'node:net';
import { connectionRefused, trackConnection } from '../admin/metrics.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import { parseAddress } from '../util/units.js';
import { resetConnection } from './splice.js';

export const DEFAULT_ALLOW = ['127.0.0.0/8', '::1/128'];

export interface TcpListenerOptions {
  name: string;
  /** host:port, [v6]:port or a unix socket path (allow-lists do not apply to unix sockets). */
  listen: string;
  /** Client networks allowed (CIDR or a bare address); default loopback only. */
  allow?: string[];
  maxConnections: number;
  logger: Logger;
  onConnection: (socket: Socket) => void;
}

export interface TcpListener {
  server: Server;
  address: AddressInfo | string;
  /** Stops accepting, waits for open connections to end until `deadlineMs` (default 10 s), then destroys the rest. */
  close(deadlineMs?: number): Promise<void>;
  connections: Set<Socket>;
}

/** Parses one allow-list entry into a predicate; throws ConfigError naming it when it is not a CIDR. */
export function parseCidr(cidr: string): { address: string; prefix: number; family: 4 | 6 } {
  const slash = cidr.indexOf('/');
  const address = (slash >= 0 ? cidr.slice(0, slash) : cidr).trim();
  const family = isIP(address);
  if (family === 0) throw new ConfigError('allow', `"${cidr}" is not an IP address or CIDR`);
  const max = family === 4 ? 32 : 128;
  const prefixText = slash >= 0 ? cidr.slice(slash + 1).trim() : String(max);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max)
    throw new ConfigError('allow', `"${cidr}": prefix must be 0-${max}`);
  return { address, prefix: Number(prefixText), family: family as 4 | 6 };
}

/** Builds a BlockList (used as an allow-list) from CIDRs; IPv4 entries also match IPv4-mapped IPv6 clients. */
export function compileAllowList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const { address, prefix, family } = parseCidr(c);
    list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
    if (family === 4) list.addSubnet(`::ffff:${address}`, 96 + prefix, 'ipv6');
  }
  return list;
}

/** True when `ip` is inside `cidr`. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match IPv4 ranges. */
export function cidrMatch(ip: string, cidr: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  let list: BlockList;
  try {
    list = compileAllowList([cidr]);
  } catch {
    return false;
  }
  const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip) : null;
  if (mapped) return list.check(mapped[1]!, 'ipv4') || list.check(ip, 'ipv6');
  return list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

function allowed(list: BlockList, ip: string | undefined): boolean {
  if (!ip) return false;
  const family = isIP(ip);
  if (family === 4) return list.check(ip, 'ipv4');
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    return list.check(ip, 'ipv6') || (!!mapped && list.check(mapped[1]!, 'ipv4'));
  }
  return false;
}

export async function createTcpListener(o: TcpListenerOptions): Promise<TcpListener> {
  const allowList = compileAllowList(o.allow ?? DEFAULT_ALLOW);
  const target = parseAddress(o.listen);
  const connections = new Set<Socket>();
  // Half-open allowed: protocols that splice must be able to forward a FIN in one direction only.
  const server = createServer({ allowHalfOpen: true, noDelay: true });
  const isUnix = 'path' in target;

  const onConnection = (socket: Socket) => {
    const client = socket.remoteAddress;
    if (!isUnix && !allowed(allowList, client)) {
      o.logger.warn(
        { listener: o.name, client, port: socket.remotePort },
        'client not in the allow list: reset',
      );
      socket.on('error', () => {});
      resetConnection(socket);
      connectionRefused(o.name, 'allow-list');
      return;
    }
    if (connections.size >= o.maxConnections) {
      o.logger.warn(
        { listener: o.name, client, maxConnections: o.maxConnections },
        'connection limit reached: reset',
      );
      socket.on('error', () => {});
      resetConnection(socket);
      connectionRefused(o.name, 'limit');
      return;
    }
    connections.add(socket);
    trackConnection(o.name, socket);
    socket.once('close', () => connections.delete(socket));
    try {
      o.onConnection(socket);
    } catch (e) {
      o.logger.error({ listener: o.name, err: (e as Error).message }, 'connection handler threw');
      socket.destroy();
    }
  };

  const key = handoverKey(o.name, o.listen, target);
  const inherited = handover?.get(key);
  if (inherited) {
    // Reload (SIGHUP): take the bound socket over from the previous generation, so the port never
    // closes; from this tick on new connections come here, the old generation keeps its own.
    handover!.delete(key);
    inherited.server.off('connection', inherited.onConnection);
    inherited.takenOver = true;
    inherited.server.on('connection', onConnection);
    const entry: BoundServer = { server: inherited.server, onConnection, takenOver: false };
    bound.set(key, entry);
    return listenerHandle(inherited.server, inherited.server.address() ?? o.listen, connections, entry);
  }
  server.on('connection', onConnection);

  // A cluster worker never unlinks: the path may be the socket the primary bound for another worker.
  if (isUnix && !cluster.isWorker) await rm(target.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      reject(
        new ConfigError(
          `listeners.${o.name}.listen`,
          `cannot listen on ${o.listen}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`,
          { cause: e },
        ),
      );
    };
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (isUnix) server.listen(target.path, done);
    else server.listen({ host: target.host, port: target.port }, done);
  });
  server.on('error', (e) => o.logger.error({ listener: o.name, err: e.message }, 'listener error'));
  const entry: BoundServer = { server, onConnection, takenOver: false };
  bound.set(key, entry);
  return listenerHandle(server, server.address() ?? o.listen, connections, entry);
}

/** One bound socket and the handler currently fed by it (it changes hands on reload). */
interface BoundServer {
  server: Server;
  onConnection: (socket: Socket) => void;
  /** True once a newer generation's listener took the socket over. */
  takenOver: boolean;
}

/** Every socket this process has bound, by handoverKey, while its listener is open. */
const bound = new Map<string, BoundServer>();
/** During a reload: sockets the new generation may take over (by handoverKey). */
let handover: Map<string, BoundServer> | null = null;

/** Port 0 binds differently each time, so such sockets are handed over only to the same listener name. */
function handoverKey(name: string, listen: string, target: ReturnType<typeof parseAddress>): string {
  if ('path' in target) return `unix:${target.path}`;
  return target.port === 0 ? `${name}\0${listen}` : `${target.host}:${target.port}`;
}

/**
 * Reload support: between beginHandover() and endHandover(), createTcpListener for an address this
 * process already listens on adopts the existing socket instead of binding again (Node 20 has no
 * SO_REUSEPORT, and a close-then-bind gap would refuse clients). endHandover() returns how many
 * sockets were left unclaimed; their old owners close them when they are closed.
 */
export function beginHandover(): void {
  handover = new Map(bound);
}

export function endHandover(): number {
  const left = handover?.size ?? 0;
  handover = null;
  return left;
}

function listenerHandle(
  server: Server,
  address: AddressInfo | string,
  connections: Set<Socket>,
  entry: BoundServer,
): TcpListener {
  return {
    server,
    address,
    connections,
    close(deadlineMs = 10_000): Promise<void> {
      return new Promise((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        const finish = () => {
          if (timer) clearTimeout(timer);
          resolve();
        };
        if (entry.takenOver) {
          // The socket lives on in the next generation: only our own connections drain.
          if (connections.size === 0) return finish();
          const check = () => {
            if (connections.size === 0) finish();
          };
          for (const s of connections) s.once('close', check);
        } else {
          for (const [k, v] of bound) if (v === entry) bound.delete(k);
          server.off('connection', entry.onConnection);
          server.close(() => finish());
        }
        if (connections.size === 0) return;
        timer = setTimeout(() => {
          for (const s of connections) s.destroy();
          connections.clear();
        }, deadlineMs);
        timer.unref();
      });
    },
  };
}
