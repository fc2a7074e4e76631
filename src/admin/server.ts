/**
 * The admin listener (DESIGN 4.2 `admin`): liveness, readiness, Prometheus metrics, the event API
 * with a live feed (server-sent events), and the dashboard at `/`. Only clients in `admin.allow`
 * (loopback by default) are answered, and everything but /healthz and a bare /readyz needs the
 * token (Bearer header, or the cookie the dashboard sets after `/?token=…`).
 */
import http from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import type { Registry } from 'prom-client';
import type { ScannerVersion } from '../engine/types.js';
import type { Logger } from '../logger.js';
import { compileAllowList } from '../net/listener.js';
import { parseAddress } from '../util/units.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS, LOGIN_HTML } from './dashboard.js';
import { type EventStore, parseEventQuery } from './event-store-types.js';
import type { EventFeed } from './feed.js';
import { overview } from './overview.js';
import { COOKIE, presentedToken, tokenMatches } from './token.js';

export interface ListenerState {
  name: string;
  protocol: string;
  address: string;
  state: 'listening' | 'not started';
  reason?: string;
  /** For listeners with a fixed upstream: "reachable" or "unreachable (why)". */
  upstream?: string;
}

export interface AdminStatus {
  ready: boolean;
  engine: ScannerVersion | null;
  workers: number;
  listeners: ListenerState[];
  /** Other subsystems' one-glance numbers (quarantine, registry), by name. */
  summaries: Record<string, Record<string, unknown>>;
}

/** Where the admin gets its numbers: the process itself, or (workers: N) the cluster primary. */
export interface AdminSource {
  collect(): Promise<Registry>;
  status(): Promise<AdminStatus>;
}

export interface AdminOptions {
  listen: string;
  allow: string[];
  token: string;
  source: AdminSource;
  feed: EventFeed;
  store: EventStore | null;
  logger: Logger;
}

export interface AdminServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'",
};

function clientAllowed(list: ReturnType<typeof compileAllowList>, ip: string | undefined): boolean {
  if (!ip) return false;
  const family = isIP(ip);
  if (family === 4) return list.check(ip, 'ipv4');
  if (family !== 6) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return list.check(ip, 'ipv6') || (!!mapped && list.check(mapped[1]!, 'ipv4'));
}

export async function startAdmin(o: AdminOptions): Promise<AdminServer> {
  const allowList = compileAllowList(o.allow);
  const streams = new Set<http.ServerResponse>();

  const server = http.createServer(async (req, res) => {
    const send = (
      status: number,
      body: unknown,
      type = 'application/json',
      extra: http.OutgoingHttpHeaders = {},
    ) => {
      if (res.headersSent) return;
      res.writeHead(status, { 'content-type': type, ...SECURITY_HEADERS, ...extra });
      res.end(typeof body === 'string' ? body : `${JSON.stringify(body)}\n`);
    };
    try {
      if (!clientAllowed(allowList, req.socket.remoteAddress)) {
        o.logger.warn({ client: req.socket.remoteAddress }, 'admin: client not in admin.allow');
        return send(403, { error: 'forbidden: client address not in admin.allow' });
      }
      const url = new URL(req.url ?? '/', 'http://admin');
      const path = url.pathname;
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return send(405, { error: 'method not allowed' }, undefined, { allow: 'GET, HEAD' });
      if (path === '/healthz') return send(200, { status: 'ok' });

      const authorized = tokenMatches(o.token, presentedToken(req.headers));
      if (path === '/readyz') {
        const s = await o.source.status();
        const body = authorized
          ? { status: s.ready ? 'ready' : 'not ready', ...s }
          : { status: s.ready ? 'ready' : 'not ready' };
        return send(s.ready ? 200 : 503, body);
      }
      if (path === '/' && !authorized) {
        const given = url.searchParams.get('token');
        if (given && tokenMatches(o.token, given)) {
          // Move the token from the URL (history, logs) into an HttpOnly cookie for this origin.
          return send(303, '', 'text/plain', {
            location: '/',
            'set-cookie': `${COOKIE}=${encodeURIComponent(given)}; Path=/; HttpOnly; SameSite=Strict`,
          });
        }
        return send(401, LOGIN_HTML, 'text/html; charset=utf-8');
      }
      if (!authorized)
        return send(401, { error: 'token required (Authorization: Bearer …)' }, undefined, {
          'www-authenticate': 'Bearer realm="scangate admin"',
        });

      switch (path) {
        case '/':
          return send(200, DASHBOARD_HTML, 'text/html; charset=utf-8');
        case '/dashboard.js':
          return send(200, DASHBOARD_JS, 'text/javascript; charset=utf-8');
        case '/dashboard.css':
          return send(200, DASHBOARD_CSS, 'text/css; charset=utf-8');
        case '/metrics': {
          const reg = await o.source.collect();
          return send(200, await reg.metrics(), reg.contentType);
        }
        case '/api/overview': {
          const [reg, status] = await Promise.all([o.source.collect(), o.source.status()]);
          const stats = o.store ? await o.store.stats() : null;
          return send(200, { ...(await overview(reg, status)), eventStore: stats });
        }
        case '/api/events': {
          let q: ReturnType<typeof parseEventQuery>;
          try {
            q = parseEventQuery(url.searchParams);
          } catch (e) {
            return send(400, { error: (e as Error).message });
          }
          if (!o.store) return send(200, { source: 'memory', events: o.feed.recent(q.limit).reverse() });
          return send(200, { source: 'store', events: await o.store.query(q) });
        }
        case '/api/events/stream':
          return stream(req, res);
        default:
          return send(404, {
            error: 'not found',
            endpoints: [
              '/',
              '/healthz',
              '/readyz',
              '/metrics',
              '/api/overview',
              '/api/events',
              '/api/events/stream',
            ],
          });
      }
    } catch (e) {
      o.logger.error({ err: (e as Error).message }, 'admin request failed');
      send(500, { error: 'internal error' });
    }
  });

  /** Server-sent events: every new event as one `data:` line; a comment every 15 s keeps proxies open. */
  function stream(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
    });
    res.write('retry: 2000\n\n');
    streams.add(res);
    const unsubscribe = o.feed.subscribe((event) => {
      // A reader that stopped reading is cut off rather than buffered without bound.
      if (res.writableLength > 1024 * 1024) return res.destroy();
      res.write(`event: security\ndata: ${JSON.stringify(event)}\n\n`);
    });
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    ping.unref();
    const done = () => {
      clearInterval(ping);
      unsubscribe();
      streams.delete(res);
    };
    req.on('close', done);
    res.on('close', done);
  }

  // The admin page serves a few operators and a scraper, never a crowd.
  server.maxConnections = 256;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const addr = parseAddress(o.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('path' in addr) server.listen(addr.path, resolve);
    else server.listen(addr.port, addr.host, resolve);
  });
  server.on('error', (e) => o.logger.error({ err: e.message }, 'admin listener error'));
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise((r) => {
        for (const s of streams) s.destroy();
        server.close(() => r());
        server.closeIdleConnections();
      }),
  };
}
