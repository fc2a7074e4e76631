/**
 * Starts scangate's tunnel listener in-process for tests: the real builtin engine, a memory event
 * sink, the listener config run through the real schema (so defaults are the shipped ones).
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { MemoryEventSink, type SecurityEvent } from '../../src/admin/events.js';
import { configSchema, type TunnelListenerConfig } from '../../src/config/schema.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { silentLogger } from '../../src/logger.js';
import { connect, type TunnelClient, type TunnelClientOptions } from '../../src/protocols/tunnel/client.js';
import { startTunnelListener, type TunnelService } from '../../src/protocols/tunnel/index.js';
import type { IssuedCert } from './tunnel-pki.js';

export interface TunnelUnderTest {
  port: number;
  events: MemoryEventSink;
  service: TunnelService;
  close(): Promise<void>;
}

let sharedScanner: Scanner | null = null;
async function scanner(): Promise<Scanner> {
  sharedScanner ??= await createBuiltinScanner();
  return sharedScanner;
}

export async function startTunnel(listener: Record<string, unknown>): Promise<TunnelUnderTest> {
  const config = configSchema.parse({
    dataDir: '/nonexistent-tunnel-tests',
    admin: null,
    listeners: [{ name: 'tunnel', protocol: 'tunnel', listen: '127.0.0.1:0', ...listener }],
  });
  const events = new MemoryEventSink();
  const service = await startTunnelListener(config.listeners[0] as TunnelListenerConfig, {
    config,
    scanner: await scanner(),
    logger: silentLogger,
    events,
  });
  return {
    port: (service.address as AddressInfo).port,
    events,
    service,
    close: () => service.close(500),
  };
}

/** Polls `cond` every 20 ms until it holds (bounded). Not a timing assertion: only a wait. */
export async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The events of one kind, waiting (bounded) until at least one is there. */
export async function eventsOf(events: MemoryEventSink, kind: string): Promise<SecurityEvent[]> {
  await until(() => events.events.some((e) => e.kind === kind), `a "${kind}" event`);
  return events.events.filter((e) => e.kind === kind);
}

export function clientOptions(
  port: number,
  cert: IssuedCert,
  caFile: string,
  extra: Partial<TunnelClientOptions> = {},
): TunnelClientOptions {
  return {
    host: '127.0.0.1',
    servername: 'localhost',
    port,
    cert: cert.certPem,
    key: cert.keyPem,
    ca: readFileSync(caFile),
    ...extra,
  };
}

export function connectClient(
  port: number,
  cert: IssuedCert,
  caFile: string,
  extra: Partial<TunnelClientOptions> = {},
): Promise<TunnelClient> {
  return connect(clientOptions(port, cert, caFile, extra));
}

/**
 * A raw mTLS connection to a tunnel listener as `who` (a full handshake: no session is offered, so
 * it sees the material the server has now); resolves with the socket or the failure.
 */
export function dialTunnel(port: number, caPem: string, who: IssuedCert): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: caPem,
      cert: who.certPem,
      key: who.keyPem,
      session: undefined,
    });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}
