/**
 * Reload of configuration and certificates, in-process: a new interception CA named by the new
 * configuration signs the leaves of new connections while a keep-alive connection opened before the
 * reload finishes its request in flight on the old state (then, idle, is closed); a listener added by the new configuration starts, the others keep
 * their sockets; a configuration whose signatures do not load is refused and changes nothing.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { resolveConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { type Gateway, startGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/logger.js';
import { CertificateAuthority } from '../../src/tls/ca.js';
import { startTestOrigin } from '../helpers/ops-https.js';

let dir: string;
let origin: Awaited<ReturnType<typeof startTestOrigin>>;
let gw: Gateway;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-reloadcfg-'));
  origin = await startTestOrigin(dir, (req, res) => {
    const answer = () => {
      res.writeHead(200, { 'content-length': 3 });
      res.end(req.url === '/a' ? 'aaa' : req.url === '/slow' ? 'sss' : 'bbb');
    };
    if (req.url === '/slow') setTimeout(answer, 500);
    else answer();
  });
});

after(async () => {
  await gw?.close(500);
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(extra: Partial<ConfigInput> = {}, listeners: ConfigInput['listeners'] = []) {
  return resolveConfig({
    dataDir: join(dir, 'data'),
    log: { level: 'silent' },
    tls: { upstream: { ca: [origin.caFile] } },
    listeners: [{ name: 'web', protocol: 'http', listen: '127.0.0.1:0' }, ...(listeners ?? [])],
    admin: null,
    events: null,
    ...extra,
  });
}

/** A keep-alive HTTPS connection through the proxy; `get` sends one request on it. */
async function tunnel(port: number): Promise<{ tls: TLSSocket; get(path: string): Promise<string> }> {
  const raw = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    raw.once('error', reject);
    raw.once('connect', () =>
      raw.write(`CONNECT localhost:${origin.port} HTTP/1.1\r\nHost: localhost\r\n\r\n`),
    );
    raw.once('data', (d) => (/ 200 /.test(d.toString()) ? resolve() : reject(new Error(d.toString()))));
  });
  const tls = tlsConnect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
  await new Promise((r) => tls.once('secureConnect', r));
  return {
    tls,
    get: (path) =>
      new Promise((resolve, reject) => {
        let buf = '';
        const onData = (d: Buffer) => {
          buf += d.toString('latin1');
          const end = buf.indexOf('\r\n\r\n');
          if (end >= 0 && buf.length >= end + 4 + 3) {
            tls.off('data', onData);
            resolve(buf.slice(end + 4, end + 7));
          }
        };
        tls.on('data', onData);
        tls.once('error', reject);
        tls.write(`GET ${path} HTTP/1.1\r\nHost: localhost:${origin.port}\r\n\r\n`);
      }),
  };
}

it(
  'a reload switches new connections to the new CA and listeners; open ones carry on; a bad config changes nothing',
  { timeout: 30_000 },
  async () => {
    gw = await startGateway(config(), silentLogger);
    const webPort = (gw.services[0]!.address as AddressInfo).port;
    const caBefore = gw.ca.fingerprint256;

    const old = await tunnel(webPort);
    assert.equal(await old.get('/a'), 'aaa');
    assert.equal(old.tls.getPeerCertificate().issuer.CN, 'scangate interception CA');
    const oldLeaf = old.tls.getPeerX509Certificate()!;

    // A request in flight across the reload.
    const inFlight = old.get('/slow');
    const ca2 = await CertificateAuthority.create({ cert: join(dir, 'ca2.crt'), key: join(dir, 'ca2.key') });
    const { drained } = await gw.reload(
      config(
        {
          tls: {
            upstream: { ca: [origin.caFile] },
            ca: { cert: join(dir, 'ca2.crt'), key: join(dir, 'ca2.key') },
          },
        },
        [{ name: 'web2', protocol: 'http', listen: '127.0.0.1:0' }],
      ),
    );
    assert.equal(gw.ca.fingerprint256, ca2.fingerprint256);
    assert.notEqual(gw.ca.fingerprint256, caBefore);
    assert.deepEqual(gw.services.map((s) => s.name).sort(), ['web', 'web2']);
    assert.equal(
      (gw.services.find((s) => s.name === 'web')!.address as AddressInfo).port,
      webPort,
      'same socket',
    );

    const fresh = await tunnel(webPort);
    assert.equal(await fresh.get('/b'), 'bbb');
    const ca2Key = new X509Certificate(ca2.certPem).publicKey;
    assert.ok(fresh.tls.getPeerX509Certificate()!.verify(ca2Key), 'the new leaf is signed by the new CA');
    assert.ok(!oldLeaf.verify(ca2Key), 'the old one was not');

    // The request in flight on the old generation completes; the connection, then idle, is closed.
    assert.equal(await inFlight, 'sss');
    await new Promise((r) => (old.tls.readableEnded ? r(null) : old.tls.once('end', r)));
    const web2 = await tunnel((gw.services.find((s) => s.name === 'web2')!.address as AddressInfo).port);
    assert.equal(await web2.get('/a'), 'aaa');

    await assert.rejects(
      gw.reload(config({ engine: { signatures: [join(dir, 'no-such-file.ndb')] } })),
      /no-such-file/,
    );
    assert.equal(gw.ca.fingerprint256, ca2.fingerprint256, 'a failed reload keeps the running state');
    assert.deepEqual(gw.services.map((s) => s.name).sort(), ['web', 'web2']);
    const after = await tunnel(webPort);
    assert.equal(await after.get('/a'), 'aaa');

    for (const c of [fresh, web2, after]) c.tls.end();
    await drained;
  },
);
