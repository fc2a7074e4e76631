/**
 * Transparent mode with a real kernel redirect: iptables REDIRECT in the nat OUTPUT chain sends
 * curl's connections (run as user nobody, so the proxy's own upstream connections, made as root,
 * are not redirected back to itself) to the listener, which reads SO_ORIGINAL_DST. Needs root and
 * iptables; the rules are narrow (destination 127.0.0.2, one port each, uid nobody) and removed after.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema, type HttpListenerConfig } from '../../src/config/schema.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import { silentLogger } from '../../src/logger.js';
import type { RunningService } from '../../src/net/service.js';
import { startHttpListener } from '../../src/protocols/http/index.js';
import { createTlsRuntime } from '../../src/tls/runtime.js';
import { isRoot, requireCapability, which } from '../helpers/peers.js';
import { createTestPki, curl, type Origin, splitHead, startOrigin } from './http-origin.js';

const NOBODY = 65534;
const ADDR = '127.0.0.2';
const rules: string[][] = [];
let dir: string;
let plain: Origin;
let secure: Origin;
let proxy: RunningService;
let proxyPort: number;
let caFile: string;
let downPort: number;
let ready = false;
const events = new MemoryEventSink();

function iptables(args: string[]): void {
  execFileSync('iptables', ['-w', '5', '-t', 'nat', ...args], { stdio: 'pipe' });
}

function redirect(port: number): void {
  const rule = [
    'OUTPUT',
    '-p',
    'tcp',
    '-d',
    ADDR,
    '--dport',
    String(port),
    '-m',
    'owner',
    '--uid-owner',
    String(NOBODY),
    '-j',
    'REDIRECT',
    '--to-ports',
    String(proxyPort),
  ];
  iptables(['-A', ...rule]);
  rules.push(rule);
}

/** curl as nobody, so the redirect applies to it and not to the proxy. */
function curlAsNobody(args: string[]) {
  const wrap = [
    '/usr/bin/setpriv',
    '--reuid',
    String(NOBODY),
    '--regid',
    String(NOBODY),
    '--clear-groups',
    '--',
  ];
  return curl(which('curl')!, args, { wrap });
}

before(async () => {
  if (!isRoot() || !which('iptables') || !which('setpriv') || !which('curl')) return;
  try {
    iptables(['-L', 'OUTPUT', '-n']);
  } catch {
    return;
  }
  dir = mkdtempSync(join(tmpdir(), 'scangate-httpt-'));
  chmodSync(dir, 0o755);
  const pki = await createTestPki(dir);
  plain = await startOrigin({ host: ADDR });
  secure = await startOrigin({ host: ADDR, tls: await pki.server(['localhost']) });
  const config = configSchema.parse({
    dataDir: join(dir, 'data'),
    tls: { upstream: { ca: [pki.caFile] } },
    listeners: [{ name: 'transparent', protocol: 'http', listen: '127.0.0.1:0', mode: 'transparent' }],
  });
  const scanner = await createBuiltinScanner();
  const runtime = await createTlsRuntime(config, silentLogger, events);
  proxy = await startHttpListener(config.listeners[0] as HttpListenerConfig, {
    config,
    scanner,
    logger: silentLogger,
    events,
    tls: runtime,
  });
  proxyPort = (proxy.address as AddressInfo).port;
  caFile = join(dir, 'scangate-ca.pem');
  writeFileSync(caFile, runtime.ca.certPem, { mode: 0o644 });
  // Port 1 (tcpmux): nothing listens there and, unlike a port freed a moment ago, the kernel never
  // hands it out as an ephemeral port, so no stale conntrack entry can shadow the redirect.
  downPort = 1;
  redirect(plain.port);
  redirect(secure.port);
  redirect(downPort);
  ready = true;
});

after(async () => {
  for (const r of rules) {
    try {
      iptables(['-D', ...r]);
    } catch {}
  }
  await proxy?.close(100);
  await plain?.close();
  await secure?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('transparent mode behind iptables REDIRECT', () => {
  it('scans plain HTTP to the original destination', async (t) => {
    if (!requireCapability(t, ready, 'needs root, iptables (nat) and setpriv')) return;
    const bad = await curlAsNobody(['-D', '-', `http://${ADDR}:${plain.port}/eicar.com`]);
    assert.equal(splitHead(bad.stdout).status, 403, bad.stderr);
    const ev = events.events.find((e) => e.kind === 'verdict');
    assert.equal(ev?.server, `${ADDR}:${plain.port}`);
    const ok = await curlAsNobody([`http://${ADDR}:${plain.port}/clean.txt`]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n');
  });

  it('intercepts TLS to the original destination with a leaf for the SNI name', async (t) => {
    if (!requireCapability(t, ready, 'needs root, iptables (nat) and setpriv')) return;
    const args = ['--cacert', caFile, '--resolve', `localhost:${secure.port}:${ADDR}`];
    const bad = await curlAsNobody([...args, '-D', '-', `https://localhost:${secure.port}/eicar.com`]);
    assert.equal(splitHead(bad.stdout).status, 403, bad.stderr);
    const ok = await curlAsNobody([...args, `https://localhost:${secure.port}/clean.txt`]);
    assert.equal(ok.stdout.toString(), 'hello, clean world\n', ok.stderr);
  });

  it('resets the client when the original destination is down (no TLS handshake)', async (t) => {
    if (!requireCapability(t, ready, 'needs root, iptables (nat) and setpriv')) return;
    // The RST can reach curl before or after it sees its connect complete: either way it reports a
    // reset or a failed connect, and never a TLS handshake or an HTTP answer.
    const resetOrRefused =
      /reset by peer|Connection reset|SSL_ERROR_SYSCALL|errno 104|Recv failure|Couldn't connect/i;
    const r = await curlAsNobody(['-k', '-v', `https://${ADDR}:${downPort}/`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, resetOrRefused);
    assert.doesNotMatch(r.stderr, /SSL connection using|Server certificate/);
    assert.equal(r.stdout.length, 0);
    const h = await curlAsNobody([`http://${ADDR}:${downPort}/`]);
    assert.notEqual(h.code, 0);
    assert.match(h.stderr, resetOrRefused);
    assert.equal(h.stdout.length, 0);
  });
});
