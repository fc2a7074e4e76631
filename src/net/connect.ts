/**
 * Upstream first (DESIGN 1, capability 2): a client is answered only once the real server accepted
 * our TCP connection. This module opens that connection and turns every way it can fail into an
 * UpstreamError with a stable code, so each protocol can mirror the failure (CONNECT → 502, transparent
 * → RST, SMTP → reset or 421) without looking at errno strings.
 */
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

/**
 * Opens TCP connections to upstream servers. The returned socket is connected, paused is not forced,
 * half-open allowed (so a splice can forward a FIN in one direction while data still flows back).
 */
export class UpstreamFirstConnector {
  readonly stats: ConnectorStats = { attempts: 0, failures: 0, lastConnectMs: 0, totalConnectMs: 0 };

  constructor(private readonly defaults: { timeoutMs?: number } = {}) {}

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
      const socket = netConnect({
        host,
        port,
        allowHalfOpen: true,
        noDelay: true,
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
