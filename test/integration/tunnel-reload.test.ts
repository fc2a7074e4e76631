/**
 * Issue 6, done-when 4: certificate and CRL reload. Through `scangate run` and a real SIGHUP, and
 * in-process through the file watcher: connections open before the reload keep working (message and
 * stream mode), new connections get the new server certificate, and a client revoked by the new CRL
 * is refused while its connection from before the reload survives — past drain.reloadTimeout, since
 * a SIGHUP that leaves the listener's config as it was reloads it in place; a changed config replaces it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { resolveConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/logger.js';
import type { TunnelClient } from '../../src/protocols/tunnel/client.js';
import type { TunnelService } from '../../src/protocols/tunnel/index.js';
import { TestBackend } from '../helpers/tunnel-backend.js';
import { connectClient, dialTunnel, startTunnel, until } from '../helpers/tunnel-gateway.js';
import { type EchoBackend, startEchoBackend } from '../helpers/tunnel-peers.js';
import { type IssuedCert, tunnelPki } from '../helpers/tunnel-pki.js';

const ROOT = join(import.meta.dirname, '..', '..');
/** drain.reloadTimeout in the reload tests: connections from before a reload must outlive it. */
const RELOAD_TIMEOUT_MS = 500;

type Pki = Awaited<ReturnType<typeof tunnelPki>>;

const dial = (port: number, pki: Pki, who: IssuedCert) => dialTunnel(port, pki.ca.certPem, who);

/** Serial of the certificate the gateway presents to a new connection. */
async function servedSerial(port: number, pki: Pki, who: IssuedCert): Promise<string> {
  const s = await dial(port, pki, who);
  const serial = s.getPeerX509Certificate()!.serialNumber;
  s.destroy();
  return serial.toLowerCase();
}

/** Echo round trip on a stream-mode connection. */
function echo(s: TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(text);
  });
}

/** Whether a new stream connection with `who` is served (false: refused at handshake or first read). */
async function isServed(port: number, pki: Pki, who: IssuedCert): Promise<boolean> {
  let s: TLSSocket;
  try {
    s = await dial(port, pki, who);
  } catch {
    return false;
  }
  const r = await Promise.race([
    echo(s, 'probe').then(
      (g) => g === 'probe',
      () => false,
    ),
    new Promise<boolean>((r) => s.once('close', () => r(false))),
  ]);
  s.destroy();
  return r;
}

/** Replaces a file the way deployment tools do: write aside, rename over. */
function replace(path: string, text: string): void {
  writeFileSync(`${path}.new`, text);
  renameSync(`${path}.new`, path);
}

describe('tunnel TLS material reload', () => {
  let pki: Pki;
  let alice: IssuedCert;
  let bob: IssuedCert;
  let msgBackend: TestBackend;
  let streamBackend: EchoBackend;
  const stops: (() => Promise<void> | void)[] = [];

  before(async () => {
    pki = await tunnelPki();
    alice = await pki.ca.issue({ commonName: 'alice' });
    bob = await pki.ca.issue({ commonName: 'bob' });
    msgBackend = await new TestBackend().start();
    streamBackend = await startEchoBackend();
  });
  after(async () => {
    for (const s of stops.reverse()) await s();
    await msgBackend?.stop();
    await streamBackend?.close();
    pki?.dir.cleanup();
  });

  /** Live connections of both modes, opened before a reload. */
  async function openConnections(ports: { message: number; stream: number }) {
    const client: TunnelClient = await connectClient(ports.message, alice, pki.files.clientCa);
    stops.push(() => client.close());
    const stream = await dial(ports.stream, pki, alice);
    const bobStream = await dial(ports.stream, pki, bob);
    stops.push(
      () => void stream.destroy(),
      () => void bobStream.destroy(),
    );
    assert.equal(await echo(stream, 'before'), 'before');
    assert.equal(await echo(bobStream, 'bob before'), 'bob before');
    return { client, clientSocket: client.socket, stream, bobStream };
  }

  /** New server certificate and a CRL revoking bob, written over the files in place. */
  async function rotate(): Promise<string> {
    const next = await pki.ca.issue({ commonName: 'localhost', dns: ['localhost'], usage: 'server' });
    pki.ca.revoke(bob);
    const crl = await pki.ca.crl();
    replace(pki.files.cert, next.certPem);
    replace(pki.files.key, next.keyPem);
    replace(pki.files.crl, crl);
    return next.serial.toLowerCase();
  }

  async function assertSurvivedAndRenewed(
    ports: { message: number; stream: number },
    live: Awaited<ReturnType<typeof openConnections>>,
    newSerial: string,
  ): Promise<void> {
    // New connections see the new certificate…
    for (const port of [ports.message, ports.stream])
      assert.equal(await servedSerial(port, pki, alice), newSerial);
    // …and the new CRL: bob is refused now.
    assert.equal(await isServed(ports.stream, pki, bob), false, 'revoked bob refused on a new connection');
    assert.equal(await isServed(ports.stream, pki, alice), true);
    // Connections from before the reload are the same sockets and still carry traffic.
    assert.equal(live.client.socket, live.clientSocket, 'message-mode client was not reconnected');
    assert.equal((await live.client.request(Buffer.from('after'))).toString(), 'after');
    assert.equal(await echo(live.stream, 'after'), 'after');
    assert.equal(await echo(live.bobStream, 'bob after'), 'bob after', "bob's existing connection survives");
  }

  it('on SIGHUP to scangate run', async () => {
    const cfg = join(pki.dir.dir, 'scangate.yaml');
    const tls = `{ cert: ${pki.files.cert}, key: ${pki.files.key}, clientCa: ${pki.files.clientCa}, crl: ${pki.files.crl}, watch: false }`;
    writeFileSync(
      cfg,
      [
        `dataDir: ${join(pki.dir.dir, 'data')}`,
        'admin: null',
        'log: { level: warn }',
        // Short, so the test can wait past it: connections from before the SIGHUP must outlive it.
        `drain: { reloadTimeout: ${RELOAD_TIMEOUT_MS}ms }`,
        'listeners:',
        `  - { name: pay, protocol: tunnel, listen: 127.0.0.1:0, mode: message, upstream: 127.0.0.1:${msgBackend.port}, tls: ${tls} }`,
        `  - { name: raw, protocol: tunnel, listen: 127.0.0.1:0, mode: stream, upstream: 127.0.0.1:${streamBackend.port}, tls: ${tls} }`,
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(
      process.execPath,
      [join(ROOT, 'bin', 'scangate.js'), 'run', '-c', cfg],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, SCANGATE_FROM_SOURCE: '1' },
      },
    );
    stops.push(() => void child.kill('SIGTERM'));
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await until(() => /raw \(tunnel\) listening on/.test(out), `the banner (${out})`, 30_000);
    const ports = {
      message: Number(/pay \(tunnel\) listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]),
      stream: Number(/raw \(tunnel\) listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]),
    };
    const live = await openConnections(ports);
    const newSerial = await rotate();
    child.kill('SIGHUP');
    // Wait (bounded) until new handshakes get the new certificate: the reload has happened.
    const deadline = Date.now() + 30_000;
    while ((await servedSerial(ports.stream, pki, alice)) !== newSerial) {
      assert.ok(Date.now() < deadline, `no reload within 30 s: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // Past the drain deadline a replaced service would have cut them (GOAWAY, then destroy).
    await new Promise((r) => setTimeout(r, RELOAD_TIMEOUT_MS + 1_000));
    await assertSurvivedAndRenewed(ports, live, newSerial);
    assert.doesNotMatch(out, /reload failed/);
  });

  it('when the files change (no signal)', async () => {
    // Fresh material for this case: the previous one revoked bob already.
    pki = await tunnelPki();
    alice = await pki.ca.issue({ commonName: 'alice' });
    bob = await pki.ca.issue({ commonName: 'bob' });
    const message = await startTunnel({
      mode: 'message',
      upstream: `127.0.0.1:${msgBackend.port}`,
      tls: pki.files,
    });
    const stream = await startTunnel({
      mode: 'stream',
      upstream: `127.0.0.1:${streamBackend.port}`,
      tls: pki.files,
    });
    stops.push(
      () => message.close(),
      () => stream.close(),
    );
    await until(() => message.service.backendReady > 0, 'backend connections');
    const ports = { message: message.port, stream: stream.port };
    const live = await openConnections(ports);
    const before = [message.service.reloads, stream.service.reloads];
    const newSerial = await rotate();
    await until(
      () => message.service.reloads > before[0]! && stream.service.reloads > before[1]!,
      'the file-change reloads',
    );
    // Several rapid renames may trigger more than one reload; wait until the watchers settle.
    await assertSurvivedAndRenewed(ports, live, newSerial);
  });
});

describe('tunnel listener across a gateway reload', () => {
  it('keeps an unchanged listener (and its connections) and replaces a changed one', async () => {
    const pki = await tunnelPki();
    const alice = await pki.ca.issue({ commonName: 'alice' });
    const backend = await new TestBackend().start();
    const listener = (heartbeat: string) => ({
      name: 'pay',
      protocol: 'tunnel' as const,
      listen: '127.0.0.1:0',
      mode: 'message' as const,
      upstream: `127.0.0.1:${backend.port}`,
      tls: { ...pki.files, watch: false },
      heartbeat: { interval: heartbeat, timeout: '60s' },
    });
    const config = (heartbeat: string) =>
      resolveConfig({
        dataDir: join(pki.dir.dir, 'data'),
        log: { level: 'silent' },
        admin: null,
        events: null,
        drain: { reloadTimeout: `${RELOAD_TIMEOUT_MS}ms` },
        listeners: [listener(heartbeat)],
      });
    const gw = await startGateway(config('15s'), silentLogger);
    try {
      const kept = gw.services[0]!;
      const port = (kept.address as AddressInfo).port;
      const client = await connectClient(port, alice, pki.files.clientCa);
      const socket = client.socket;
      await until(() => (kept as TunnelService).backendReady > 0, 'backend connections');
      const { drained } = await gw.reload(config('15s'));
      assert.equal(gw.services[0], kept, 'same listener config: the service is kept');
      await drained;
      await new Promise((r) => setTimeout(r, RELOAD_TIMEOUT_MS + 500));
      assert.equal(client.socket, socket, 'not reconnected');
      assert.equal((await client.request(Buffer.from('still here'))).toString(), 'still here');

      // A real change (heartbeat) needs a new service; the old one drains its connections.
      const reloaded = await gw.reload(config('20s'));
      assert.notEqual(gw.services[0], kept);
      await reloaded.drained;
      await until(
        () => client.socket !== socket && client.connected,
        'the client to move to the new service',
      );
      assert.equal((await client.request(Buffer.from('moved'))).toString(), 'moved');
      await client.close();
    } finally {
      await gw.close(500);
      await backend.stop();
      pki.dir.cleanup();
    }
  });
});
