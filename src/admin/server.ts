/**
 * The admin listener: liveness, readiness and Prometheus metrics. Loopback by default (DESIGN
 * 4.2 `admin.listen`); the dashboard and event store come with the operations work (issue 9).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Scanner } from '../engine/types.js';
import type { Logger } from '../logger.js';
import type { RunningService } from '../net/service.js';
import { parseAddress } from '../util/units.js';

export interface AdminDeps {
  listen: string;
  scanner: Scanner;
  services: () => RunningService[];
  logger: Logger;
}

export interface AdminServer {
  readonly address: AddressInfo;
  readonly registry: Registry;
  close(): Promise<void>;
}

export async function startAdmin(deps: AdminDeps): Promise<AdminServer> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'scangate_' });
  new Gauge({
    name: 'scangate_signatures',
    help: 'Signatures loaded in the scanning engine',
    registers: [registry],
    collect() {
      this.set(deps.scanner.version().signatures);
    },
  });
  new Gauge({
    name: 'scangate_listeners',
    help: 'Listeners bound',
    registers: [registry],
    collect() {
      this.set(deps.services().length);
    },
  });

  const server = http.createServer(async (req, res) => {
    const send = (status: number, body: unknown, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(typeof body === 'string' ? body : `${JSON.stringify(body)}\n`);
    };
    try {
      const path = new URL(req.url ?? '/', 'http://admin').pathname;
      if (req.method !== 'GET') return send(405, { error: 'method not allowed' });
      if (path === '/healthz') return send(200, { status: 'ok' });
      if (path === '/readyz') {
        const v = deps.scanner.version();
        const listeners = deps
          .services()
          .map((s) => ({ name: s.name, protocol: s.protocol, address: s.address }));
        const ready = v.signatures > 0 && listeners.length > 0;
        return send(ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', engine: v, listeners });
      }
      if (path === '/metrics') return send(200, await registry.metrics(), registry.contentType);
      return send(404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/metrics'] });
    } catch (e) {
      deps.logger.error({ err: (e as Error).message }, 'admin request failed');
      send(500, { error: 'internal error' });
    }
  });
  const addr = parseAddress(deps.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('path' in addr) server.listen(addr.path, resolve);
    else server.listen(addr.port, addr.host, resolve);
  });
  return {
    address: server.address() as AddressInfo,
    registry,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
