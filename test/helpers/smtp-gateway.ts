/**
 * Starts scangate's SMTP listener in-process for tests, with its own data folder, the real builtin
 * engine (or a given scanner), a TLS runtime that trusts the test origin CA, and an event sink; and
 * runs swaks against it.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type SmtpListenerConfig } from '../../src/config/schema.js';
import type { Scanner } from '../../src/engine/types.js';
import { silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { startSmtpListener } from '../../src/protocols/smtp/index.js';
import { createTlsRuntime } from '../../src/tls/runtime.js';

export interface GatewayUnderTest {
  port: number;
  /** PEM file of scangate's CA (what clients must trust for the client leg). */
  caFile: string;
  events: MemoryEventSink;
  service: RunningService;
  close(): Promise<void>;
}

export async function startSmtpGateway(o: {
  dir: string;
  scanner: Scanner;
  /** PEM files of roots trusted for the upstream leg. */
  upstreamCa?: string[];
  listener: Record<string, unknown>;
  engine?: Record<string, unknown>;
  logger?: import('../../src/logger.js').Logger;
}): Promise<GatewayUnderTest> {
  const config = configSchema.parse({
    dataDir: o.dir,
    ...(o.engine ? { engine: o.engine } : {}),
    tls: { upstream: { ca: o.upstreamCa ?? [] } },
    listeners: [{ name: 'mail', protocol: 'smtp', listen: '127.0.0.1:0', ...o.listener }],
  });
  const events = new MemoryEventSink();
  const logger = o.logger ?? silentLogger;
  const tls = await createTlsRuntime(config, logger, events);
  const service = await startSmtpListener(config.listeners[0] as SmtpListenerConfig, {
    config,
    scanner: o.scanner,
    logger,
    events,
    tls,
  });
  const caFile = join(o.dir, 'scangate-ca.pem');
  writeFileSync(caFile, tls.ca.certPem);
  return {
    port: (service.address as AddressInfo).port,
    caFile,
    events,
    service,
    close: () => service.close(1000),
  };
}

export interface SwaksResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs swaks (asynchronously: the servers it talks to live in this process). */
export function swaks(bin: string, args: string[], timeoutMs = 60_000): Promise<SwaksResult> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Content with the gateway's X-Scangate-* header lines (always prepended) taken off the top. */
export function withoutScangateHeaders(data: Buffer): { headers: string[]; rest: Buffer } {
  const headers: string[] = [];
  let pos = 0;
  for (;;) {
    const end = data.indexOf('\r\n', pos);
    if (end < 0) break;
    const line = data.subarray(pos, end).toString('latin1');
    if (!/^X-Scangate-[A-Za-z-]+:/i.test(line)) break;
    headers.push(line);
    pos = end + 2;
  }
  return { headers, rest: data.subarray(pos) };
}
