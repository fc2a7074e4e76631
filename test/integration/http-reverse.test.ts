/**
 * Reverse and transparent modes with real curl and raw sockets: scanning in front of one origin,
 * TLS terminated with a configured or minted certificate, and connect-first discipline (a down
 * origin resets TLS clients before any handshake, and gets plain clients a 502).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type HttpListenerConfig } from '../../src/config/schema.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { startHttpListener } from '../../src/protocols/http/index.js';
import { createTlsRuntime } from '../../src/tls/runtime.js';
import { peer } from '../helpers/peers.js';
import {
  closedPort,
  createTestPki,
  curl,
  type Origin,
  splitHead,
  startOrigin,
  type TestPki,
} from './http-origin.js';

let dir: string;
let scanner: Scanner;
let pki: TestPki;
let plain: Origin;
let secure: Origin;
const services: RunningService[] = [];
const events = new MemoryEventSink();

async function start(listener: Record<string, unknown>) {
  const config = configSchema.parse({
    dataDir: dir,
    tls: { upstream: { ca: [pki.caFile] } },
    listeners: [{ name: 'edge', protocol: 'http', listen: '127.0.0.1:0', ...listener }],
  });
  const runtime = await createTlsRuntime(config, silentLogger, events);
  const service = await startHttpListener(config.listeners[0] as HttpListenerConfig, {
    config,
    scanner,
    logger: silentLogger,
    events,
    tls: runtime,
  });
  services.push(service);
  const caFile = join(dir, `ca-${services.length}.pem`);
  writeFileSync(caFile, runtime.ca.certPem);
  return { port: (service.address as AddressInfo).port, caFile };
}

/** Opens TLS to the port: 'secure' if a handshake completed, else the socket error code. */
function tlsOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const t = tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false });
    t.once('secureConnect', () => {
      t.destroy();
      resolve('secure');
    });
    t.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    t.once('close', () => resolve('closed'));
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-httpr-'));
  scanner = await createBuiltinScanner();
  pki = await createTestPki(dir);
  plain = await startOrigin();
  secure = await startOrigin({ tls: await pki.server(['localhost']) });
});

after(async () => {
  await Promise.all(services.map((s) => s.close(100)));
  await Promise.all([plain.close(), secure.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('reverse mode', () => {
  it('scans in front of an http origin for plain clients', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const { port } = await start({ mode: 'reverse', upstream: `http://127.0.0.1:${plain.port}` });
    const bad = await curl(bin, ['-D', '-', `http://127.0.0.1:${port}/eicar.com`]);
    const { status, headers } = splitHead(bad.stdout);
    assert.equal(status, 403);
    assert.match(headers, /X-Scangate-Verdict: infected/i);
    const ok = await curl(bin, [`http://127.0.0.1:${port}/clean.txt`]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n');
  });

  it('terminates TLS with a minted leaf in front of an https origin', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const { port, caFile } = await start({ mode: 'reverse', upstream: `https://localhost:${secure.port}` });
    const args = ['--cacert', caFile, '--resolve', `localhost:${port}:127.0.0.1`];
    const bad = await curl(bin, [...args, '-D', '-', `https://localhost:${port}/eicar.gz`]);
    assert.equal(bad.code, 0, bad.stderr);
    assert.equal(splitHead(bad.stdout).status, 403);
    const ok = await curl(bin, [...args, `https://localhost:${port}/clean.txt`]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n');
    const ev = events.events.filter((e) => e.listener === 'edge' && e.kind === 'verdict').at(-1);
    assert.equal(ev?.protocol, 'https');
  });

  it('terminates TLS with the configured certificate', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const leaf = await pki.server(['localhost']);
    const cert = join(dir, 'edge.crt');
    const key = join(dir, 'edge.key');
    writeFileSync(cert, leaf.cert);
    writeFileSync(key, leaf.key);
    const { port } = await start({
      mode: 'reverse',
      upstream: `http://127.0.0.1:${plain.port}`,
      tls: { cert, key },
    });
    const ok = await curl(bin, [
      '--cacert',
      pki.caFile,
      '--resolve',
      `localhost:${port}:127.0.0.1`,
      `https://localhost:${port}/clean.txt`,
    ]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n', ok.stderr);
  });

  it('resets a TLS client before any handshake when the origin is down; plain clients get 502', async () => {
    const down = await closedPort();
    const { port } = await start({ mode: 'reverse', upstream: `https://127.0.0.1:${down}` });
    assert.equal(await tlsOutcome(port), 'ECONNRESET');
    const plainDown = await start({ mode: 'reverse', upstream: `http://127.0.0.1:${down}` });
    const text = await new Promise<string>((resolve) => {
      const s = connect(plainDown.port, '127.0.0.1');
      let got = '';
      s.on('data', (d) => {
        got += d;
      });
      s.on('close', () => resolve(got));
      s.on('error', () => {});
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    assert.match(text, /^HTTP\/1\.1 502 /);
    assert.match(text, /refused/);
  });
});

describe('transparent mode', () => {
  it('routes by Host header when not redirected, and scans', async (t) => {
    const bin = peer(t, 'curl');
    if (!bin) return;
    const { port } = await start({ mode: 'transparent' });
    const bad = await curl(bin, [
      '-D',
      '-',
      '-H',
      `Host: 127.0.0.1:${plain.port}`,
      `http://127.0.0.1:${port}/eicar.com`,
    ]);
    assert.equal(splitHead(bad.stdout).status, 403);
    const ok = await curl(bin, ['-H', `Host: 127.0.0.1:${plain.port}`, `http://127.0.0.1:${port}/clean.txt`]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n');
  });

  it('resets the client when the destination is down', async () => {
    const down = await closedPort();
    const { port } = await start({ mode: 'transparent' });
    const outcome = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.on('data', () => resolve('data'));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.on('close', () => resolve('closed'));
      s.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${down}\r\n\r\n`);
    });
    assert.equal(outcome, 'ECONNRESET');
  });
});
