/**
 * Upstream first (DESIGN 1, capability 2): a client is answered only once the real server accepted
 * our TCP connection. This module opens that connection and turns every way it can fail into an
 * UpstreamError with a stable code, so each protocol can mirror the failure (CONNECT → 502, transparent
 * → RST, SMTP → reset or 421) without looking at errno strings.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { UpstreamError } from '../errors.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export type UpstreamErrorCode =
  | 'ERR_UPSTREAM_REFUSED'
  | 'ERR_UPSTREAM_UNREACHABLE'
  | 'ERR_UPSTREAM_TIMEOUT'
  | 'ERR_UPSTREAM_RESET'
  | 'ERR_UPSTREAM_CERT_UNTRUSTED'
  | 'ERR_UPSTREAM_CERT_EXPIRED'
  | 'ERR_UPSTREAM_CERT_NAME_MISMATCH'
  | 'ERR_UPSTREAM_TLS';

/** errno codes of a failed TCP connect, by what the client should be told. */
const REFUSED = new Set(['ECONNREFUSED']);
const UNREACHABLE = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EAI_NONAME',
  'EAI_NODATA',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'EACCES',
  'EPERM',
]);
const TIMEOUT = new Set(['ETIMEDOUT', 'ERR_SOCKET_CONNECTION_TIMEOUT']);
const RESET = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** errno code of an error, looking inside the AggregateError that happy-eyeballs connects produce. */
export function errnoOf(e: unknown): string | undefined {
  const err = e as { code?: string; errors?: unknown[] };
  if (typeof err?.code === 'string') return err.code;
  if (Array.isArray(err?.errors)) {
    const codes = err.errors.map(errnoOf).filter((c): c is string => !!c);
    // Prefer the most telling: a refusal from any address beats "unreachable" on another family.
    return codes.find((c) => REFUSED.has(c)) ?? codes.find((c) => TIMEOUT.has(c)) ?? codes[0];
  }
  return undefined;
}

/** Maps a socket-level error during connect or handshake to an UpstreamError naming host:port. */
export function upstreamErrorFrom(e: unknown, host: string, port: number): UpstreamError {
  if (e instanceof UpstreamError) return e;
  const where = formatHostPort(host, port);
  const code = errnoOf(e);
  const detail = (e as Error)?.message ?? String(e);
  if (code && REFUSED.has(code))
    return new UpstreamError('ERR_UPSTREAM_REFUSED', `${where} refused the connection`, { cause: e });
  if (code && TIMEOUT.has(code))
    return new UpstreamError('ERR_UPSTREAM_TIMEOUT', `${where} did not answer in time`, { cause: e });
  if (code && RESET.has(code))
    return new UpstreamError('ERR_UPSTREAM_RESET', `${where} reset the connection`, { cause: e });
  if (code && (code.startsWith('ENOTFOUND') || code.startsWith('EAI_')))
    return new UpstreamError('ERR_UPSTREAM_UNREACHABLE', `${host} could not be resolved (${code})`, {
      cause: e,
    });
  if (code && UNREACHABLE.has(code))
    return new UpstreamError('ERR_UPSTREAM_UNREACHABLE', `${where} is unreachable (${code})`, { cause: e });
  return new UpstreamError('ERR_UPSTREAM_UNREACHABLE', `${where}: ${detail}`, { cause: e });
}

export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

export interface ConnectOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Local address to bind (e.g. to leave from a specific interface). */
  localAddress?: string;
}

export interface ConnectorStats {
  attempts: number;
  failures: number;
  /** Milliseconds of the last successful connect. */
  lastConnectMs: number;
  /** Sum of connect times of successful connects, for a mean. */
  totalConnectMs: number;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

export type Resolver = (
  hostname: string,
  family: 0 | 4 | 6,
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

/**
 * Host names resolved recently. getaddrinfo runs on libuv's small thread pool (shared with file I/O)
 * once per connection otherwise; Squid (ipcache) and browsers (about a minute) keep answers too.
 * Answers live `ttlMs` (Node's resolver reports no TTL, so a short fixed one), failures are not kept,
 * and the address that last accepted a connection is listed first: a name with an IPv6 and an IPv4
 * address whose server listens on one of them is then not refused on the other every time (Node
 * tries addresses in the order given, RFC 8305).
 */
export class ResolveCache {
  private readonly entries = new Map<string, { addresses: LookupAddress[]; expires: number }>();

  constructor(
    readonly ttlMs = 30_000,
    readonly maxEntries = 4096,
    /** The resolver asked on a miss (getaddrinfo through node:dns unless given). */
    private readonly resolve: Resolver = (hostname, family, cb) =>
      dnsLookup(hostname, { all: true, family }, cb),
  ) {}

  /** The cached answer for `hostname` (any family), in the order it is offered; for metrics and tests. */
  addresses(hostname: string): string[] {
    return this.entries.get(`0/${hostname}`)?.addresses.map((a) => a.address) ?? [];
  }

  /** A `lookup` for net.connect. */
  readonly lookup = (
    hostname: string,
    options: { family?: number | string; all?: boolean },
    callback: LookupCallback,
  ): void => {
    const family =
      options.family === 6 || options.family === 'IPv6'
        ? 6
        : options.family === 4 || options.family === 'IPv4'
          ? 4
          : 0;
    const key = `${family}/${hostname}`;
    const hit = this.entries.get(key);
    const answer = (list: LookupAddress[]) => {
      if (options.all) callback(null, list);
      else callback(null, list[0]!.address, list[0]!.family);
    };
    if (hit && hit.expires > Date.now()) {
      answer(hit.addresses);
      return;
    }
    this.resolve(hostname, family, (err, addresses) => {
      if (err || addresses.length === 0) {
        this.entries.delete(key);
        callback(err ?? Object.assign(new Error(`${hostname}: no address`), { code: 'ENOTFOUND' }), []);
        return;
      }
      this.entries.delete(key);
      this.entries.set(key, { addresses, expires: Date.now() + this.ttlMs });
      if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
      answer(addresses);
    });
  };

  /** `address` of `hostname` accepted a connection: offer it first from now on. */
  worked(hostname: string, address: string): void {
    for (const family of [0, 4, 6]) {
      const e = this.entries.get(`${family}/${hostname}`);
      const i = e ? e.addresses.findIndex((x) => x.address === address) : -1;
      if (e && i > 0) e.addresses = [e.addresses[i]!, ...e.addresses.filter((_, j) => j !== i)];
    }
  }
}

/** The cache every connector shares unless given its own. */
export const resolveCache = new ResolveCache();

/**
 * Opens TCP connections to upstream servers. The returned socket is connected, paused is not forced,
 * half-open allowed (so a splice can forward a FIN in one direction while data still flows back).
 */
export class UpstreamFirstConnector {
  readonly stats: ConnectorStats = { attempts: 0, failures: 0, lastConnectMs: 0, totalConnectMs: 0 };

  constructor(private readonly defaults: { timeoutMs?: number; resolver?: ResolveCache | null } = {}) {}

  connect(host: string, port: number, opts: ConnectOptions = {}): Promise<Socket> {
    const timeoutMs = opts.timeoutMs ?? this.defaults.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const started = performance.now();
    this.stats.attempts++;
    return new Promise<Socket>((resolve, reject) => {
      if (opts.signal?.aborted) {
        this.stats.failures++;
        reject(new UpstreamError('ERR_UPSTREAM_TIMEOUT', `connect to ${formatHostPort(host, port)} aborted`));
        return;
      }
      const resolver = this.defaults.resolver === undefined ? resolveCache : this.defaults.resolver;
      const socket = netConnect({
        host,
        port,
        allowHalfOpen: true,
        noDelay: true,
        ...(resolver ? { lookup: resolver.lookup } : {}),
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      });
      let settled = false;
      const fail = (err: UpstreamError) => {
        if (settled) return;
        settled = true;
        cleanup();
        this.stats.failures++;
        socket.destroy();
        reject(err);
      };
      const onError = (e: Error) => fail(upstreamErrorFrom(e, host, port));
      const onAbort = () =>
        fail(new UpstreamError('ERR_UPSTREAM_TIMEOUT', `connect to ${formatHostPort(host, port)} aborted`));
      const timer = setTimeout(
        () =>
          fail(
            new UpstreamError(
              'ERR_UPSTREAM_TIMEOUT',
              `${formatHostPort(host, port)} did not accept the connection within ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
      const cleanup = () => {
        clearTimeout(timer);
        socket.off('error', onError);
        socket.off('connect', onConnect);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const onConnect = () => {
        if (settled) return;
        settled = true;
        cleanup();
        const ms = performance.now() - started;
        if (resolver && socket.remoteAddress && !isIP(host)) resolver.worked(host, socket.remoteAddress);
        this.stats.lastConnectMs = ms;
        this.stats.totalConnectMs += ms;
        resolve(socket);
      };
      socket.once('connect', onConnect);
      socket.on('error', onError);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
