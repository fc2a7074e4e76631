/**
 * The interception CA and minted leaves as openssl sees them: the CA file modes, reload on the next
 * start, leaves that verify against the CA with the names, validity window, random serial and key
 * type we promise; the context cache (shared concurrent mints, LRU eviction, refresh).
 */
// @peculiar/x509 resolves its ASN.1 schemas through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createServer as createTlsServer, type PeerCertificate, type SecureContext } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { CertificateAuthority } from '../../src/tls/ca.js';
import {
  LeafMinter,
  namesFromPeerCertificate,
  normalizeNames,
  parseSubjectAltName,
} from '../../src/tls/leaf.js';
import { peer } from '../helpers/peers.js';
import { ALG, DAY, keyPair, pemKey, selfSignedCa, serial, writePem } from '../helpers/pki.js';

const dir = mkdtempSync(join(tmpdir(), 'sg-tls-leaf-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('CA: created with a 0600 key in a 0700 folder, the same CA on the next start', async () => {
  const dataDir = join(dir, 'data');
  const first = await CertificateAuthority.loadOrCreate({ dataDir });
  assert.equal(first.created, true);
  assert.equal(statSync(join(dataDir, 'ca.key')).mode & 0o777, 0o600);
  assert.equal(statSync(join(dataDir, 'ca.crt')).mode & 0o777, 0o644);
  assert.equal(statSync(dataDir).mode & 0o777, 0o700);
  assert.match(first.ca.subject, /CN=scangate interception CA/);
  const years = (first.ca.notAfter.getTime() - Date.now()) / (365 * 86_400_000);
  assert.ok(years > 9.9 && years < 10.1, `CA validity ${years} years`);

  const second = await CertificateAuthority.loadOrCreate({ dataDir });
  assert.equal(second.created, false);
  assert.equal(second.ca.fingerprint256, first.ca.fingerprint256);
});

test('CA: configured files that do not exist are an error, not a silent new CA', async () => {
  await assert.rejects(
    CertificateAuthority.loadOrCreate({
      dataDir: join(dir, 'x'),
      cert: join(dir, 'nope.crt'),
      key: join(dir, 'nope.key'),
    }),
    /do not exist/,
  );
});

test('leaf: openssl verifies it against our CA; SANs, backdated notBefore, random serial, P-256, serverAuth', async (t) => {
  const openssl = peer(t, 'openssl');
  if (!openssl) return;
  const { ca } = await CertificateAuthority.loadOrCreate({ dataDir: join(dir, 'leafca') });
  const minter = new LeafMinter(ca, { validityMs: 7 * 86_400_000 });
  const names = {
    commonName: 'www.example.test',
    dnsNames: ['www.example.test', '*.cdn.example.test'],
    ipAddresses: ['127.0.0.1', '::1'],
  };
  const a = await minter.leaf(names);
  const b = await minter.leaf({ ...names, dnsNames: [...names.dnsNames, 'other.example.test'] });
  const caFile = writePem(dir, 'ca.crt', ca.certPem);
  const leafFile = writePem(dir, 'leaf.pem', a.certPem);
  const verified = execFileSync(openssl, ['verify', '-CAfile', caFile, '-purpose', 'sslserver', leafFile], {
    encoding: 'utf8',
  });
  assert.match(verified, /leaf\.pem: OK/);

  const text = execFileSync(openssl, ['x509', '-in', leafFile, '-noout', '-text'], { encoding: 'utf8' });
  assert.match(text, /DNS:\*\.cdn\.example\.test/);
  assert.match(text, /DNS:www\.example\.test/);
  assert.match(text, /IP Address:127\.0\.0\.1/);
  assert.match(text, /IP Address:0:0:0:0:0:0:0:1/);
  assert.match(text, /Subject: CN ?= ?www\.example\.test/);
  assert.match(text, /prime256v1|P-256/);
  assert.match(text, /TLS Web Server Authentication/);
  assert.match(text, /CA:FALSE/);
  assert.match(text, /Authority Key Identifier/);

  const dates = execFileSync(
    openssl,
    ['x509', '-in', leafFile, '-noout', '-startdate', '-enddate', '-serial'],
    { encoding: 'utf8' },
  );
  const notBefore = new Date(/notBefore=(.+)/.exec(dates)![1]!);
  const notAfter = new Date(/notAfter=(.+)/.exec(dates)![1]!);
  const hoursBack = (Date.now() - notBefore.getTime()) / 3_600_000;
  assert.ok(hoursBack > 23 && hoursBack < 25, `notBefore backdated ${hoursBack} h`);
  const daysAhead = (notAfter.getTime() - Date.now()) / 86_400_000;
  assert.ok(daysAhead > 6.9 && daysAhead < 7.1, `validity ${daysAhead} days`);
  const serialA = /serial=(\w+)/.exec(dates)![1]!;
  const serialB = /serial=(\w+)/.exec(
    execFileSync(openssl, ['x509', '-noout', '-serial'], { input: b.certPem, encoding: 'utf8' }),
  )![1]!;
  assert.equal(serialA.length, 32, 'a 16-byte serial');
  assert.notEqual(serialA, serialB);
  // One process-wide key: both leaves carry the same public key.
  assert.equal(a.keyPem, b.keyPem);
});

/** The certificates a server with `context` presents, as openssl s_client (trusting `rootFile`) sees them. */
async function presentedChain(
  openssl: string,
  context: SecureContext,
  rootFile: string,
): Promise<{ count: number; verify: string }> {
  const server = createTlsServer({ SNICallback: (_name, cb) => cb(null, context) }, (s) => s.end());
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const out = await new Promise<string>((resolve) => {
      execFile(
        openssl,
        [
          's_client',
          '-connect',
          `127.0.0.1:${port}`,
          '-servername',
          'chain.test',
          '-CAfile',
          rootFile,
          '-showcerts',
        ],
        { timeout: 10_000 },
        (_e, stdout) => resolve(stdout),
      ).stdin!.end();
    });
    return {
      count: out.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0,
      verify: /Verify return code: (.*)/.exec(out)?.[1] ?? '?',
    };
  } finally {
    server.close();
  }
}

test("chain: a self-signed CA is not sent (clients hold it); an operator's intermediate CA is", async (t) => {
  const openssl = peer(t, 'openssl');
  if (!openssl) return;
  const names = { dnsNames: ['chain.test'], ipAddresses: [] };
  const { ca } = await CertificateAuthority.loadOrCreate({ dataDir: join(dir, 'chain-own') });
  assert.equal(ca.chainPem, '');
  const own = await new LeafMinter(ca).leaf(names);
  const ownFile = writePem(dir, 'chain-own.crt', ca.certPem);
  assert.deepEqual(await presentedChain(openssl, own.context, ownFile), { count: 1, verify: '0 (ok)' });

  // An operator's CA issued by their root, configured as a bundle with the root after it.
  const root = await selfSignedCa('operator root');
  const keys = await keyPair();
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=operator interception CA',
    issuer: root.cert.subject,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 365 * DAY),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: root.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root.keys.publicKey),
    ],
  });
  const files = {
    cert: writePem(dir, 'operator-ca.crt', `${intermediate.toString('pem')}\n${root.cert.toString('pem')}\n`),
    key: join(dir, 'operator-ca.key'),
  };
  writeFileSync(files.key, await pemKey(keys.privateKey), { mode: 0o600 });
  const operatorCa = await CertificateAuthority.load(files);
  const leaf = await new LeafMinter(operatorCa).leaf(names);
  const rootFile = writePem(dir, 'operator-root.crt', root.cert.toString('pem'));
  assert.deepEqual(await presentedChain(openssl, leaf.context, rootFile), { count: 2, verify: '0 (ok)' });
});

test('leaf cache: concurrent requests share one mint; order and case of names do not matter', async () => {
  const { ca } = await CertificateAuthority.loadOrCreate({ dataDir: join(dir, 'cacheca') });
  const minter = new LeafMinter(ca, { cacheSize: 2 });
  const ctxs = await Promise.all([
    minter.secureContext({ dnsNames: ['a.test', 'b.test'], ipAddresses: [] }),
    minter.secureContext({ dnsNames: ['B.test', 'a.test.'], ipAddresses: [] }),
    minter.secureContext({ dnsNames: ['b.test', 'a.test'], ipAddresses: [] }),
  ]);
  assert.equal(minter.minted, 1);
  assert.ok(ctxs[0] === ctxs[1] && ctxs[1] === ctxs[2]);

  await minter.secureContext({ dnsNames: ['c.test'], ipAddresses: [] });
  await minter.secureContext({ dnsNames: ['a.test', 'b.test'], ipAddresses: [] }); // touch: most recent
  await minter.secureContext({ dnsNames: ['d.test'], ipAddresses: [] }); // evicts c.test
  assert.equal(minter.minted, 3);
  assert.equal(minter.cachedEntries, 2);
  await minter.secureContext({ dnsNames: ['a.test', 'b.test'], ipAddresses: [] });
  assert.equal(minter.minted, 3, 'a.test still cached');
  await minter.secureContext({ dnsNames: ['c.test'], ipAddresses: [] });
  assert.equal(minter.minted, 4, 'c.test was evicted');
});

test('leaf cache: a leaf is minted afresh once half its validity has passed', async () => {
  const { ca } = await CertificateAuthority.loadOrCreate({ dataDir: join(dir, 'clockca') });
  let now = Date.now();
  const minter = new LeafMinter(ca, { validityMs: 1000 * 60, now: () => now });
  await minter.secureContext({ dnsNames: ['x.test'], ipAddresses: [] });
  now += 29_000;
  await minter.secureContext({ dnsNames: ['x.test'], ipAddresses: [] });
  assert.equal(minter.minted, 1);
  now += 2_000;
  await minter.secureContext({ dnsNames: ['x.test'], ipAddresses: [] });
  assert.equal(minter.minted, 2);
});

test('names: copied from the peer certificate (quoted SAN values too) plus SNI; junk dropped', () => {
  assert.deepEqual(
    parseSubjectAltName('DNS:a.test, DNS:"we,ird.test", IP Address:10.0.0.1, URI:http://x, email:a@b'),
    {
      dns: ['a.test', 'we,ird.test'],
      ip: ['10.0.0.1'],
    },
  );
  const cert = {
    subject: { CN: 'Origin.Test' },
    subjectaltname: 'DNS:origin.test, DNS:*.origin.test, IP Address:192.0.2.1',
  };
  const names = namesFromPeerCertificate(cert as unknown as PeerCertificate, 'api.origin.test');
  assert.deepEqual(normalizeNames(names), {
    commonName: 'Origin.Test',
    dnsNames: ['*.origin.test', 'api.origin.test', 'origin.test'],
    ipAddresses: ['192.0.2.1'],
    key: JSON.stringify(['origin.test', ['*.origin.test', 'api.origin.test', 'origin.test'], ['192.0.2.1']]),
  });
  const junk = normalizeNames({ dnsNames: ['ok.test', 'bad name', 'a\u0000b', ''], ipAddresses: [] });
  assert.deepEqual(junk.dnsNames, ['ok.test']);
  const long = normalizeNames({ commonName: `${'x'.repeat(70)}.test`, dnsNames: [], ipAddresses: [] });
  assert.equal(long.commonName.length <= 64, true, 'a CN over 64 characters is replaced');
  assert.deepEqual(namesFromPeerCertificate({} as PeerCertificate, '10.1.2.3'), {
    dnsNames: [],
    ipAddresses: ['10.1.2.3'],
  });
});
