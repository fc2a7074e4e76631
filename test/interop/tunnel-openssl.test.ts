/**
 * Issue 6, done-when 1: Debian's `openssl s_client` against the tunnel in stream mode. A valid client
 * certificate reaches the echo backend (TLS 1.2 and 1.3); no certificate, a certificate from another
 * CA, a revoked one (CRL) and one outside the allow-list fail at the handshake or the first read, and
 * each leaves an event naming the reason. None of them opens a backend connection.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { peer } from '../helpers/peers.js';
import { startTunnel, type TunnelUnderTest, until } from '../helpers/tunnel-gateway.js';
import { type EchoBackend, runProgram, startEchoBackend } from '../helpers/tunnel-peers.js';
import { TunnelCa, tunnelPki } from '../helpers/tunnel-pki.js';

describe('tunnel stream mode with openssl s_client', () => {
  let pki: Awaited<ReturnType<typeof tunnelPki>>;
  let gw: TunnelUnderTest;
  let backend: EchoBackend;
  const files: Record<string, { cert: string; key: string }> = {};

  before(async () => {
    pki = await tunnelPki();
    const other = await TunnelCa.create('some other CA');
    const certs = {
      alice: await pki.ca.issue({ commonName: 'alice' }),
      workload: await pki.ca.issue({ commonName: 'svc-7', uri: ['spiffe://bank.example/payments/clearing'] }),
      teller: await pki.ca.issue({ commonName: 'svc-8', dns: ['teller.bank.example'] }),
      deep: await pki.ca.issue({ commonName: 'svc-9', uri: ['spiffe://bank.example/payments/eu/fr/paris'] }),
      eve: await other.issue({ commonName: 'alice' }),
      mallory: await pki.ca.issue({ commonName: 'alice' }),
      outsider: await pki.ca.issue({ commonName: 'outsider', uri: ['spiffe://evil.example/payments/x'] }),
    };
    pki.ca.revoke(certs.mallory);
    pki.dir.write('crl.pem', await pki.ca.crl());
    for (const [name, c] of Object.entries(certs))
      files[name] = {
        cert: pki.dir.write(`${name}.crt`, c.certPem),
        key: pki.dir.write(`${name}.key`, c.keyPem),
      };
    backend = await startEchoBackend({ endAfterLine: true });
    gw = await startTunnel({
      mode: 'stream',
      upstream: `127.0.0.1:${backend.port}`,
      tls: pki.files,
      allow: {
        cn: ['alice'],
        dns: ['teller.bank.example'],
        uri: ['spiffe://bank.example/payments/*', 'spiffe://bank.example/payments/eu/**'],
      },
    });
  });
  after(async () => {
    await gw?.close();
    await backend?.close();
    pki?.dir.cleanup();
  });

  function sClient(bin: string, who: string | null, version: '-tls1_2' | '-tls1_3') {
    const args = [
      's_client',
      '-connect',
      `127.0.0.1:${gw.port}`,
      '-servername',
      'localhost',
      '-CAfile',
      pki.files.clientCa,
    ];
    args.push('-verify_return_error', '-quiet', version);
    if (who) args.push('-cert', files[who]!.cert, '-key', files[who]!.key);
    return runProgram(bin, args, `hello from ${who}\n`);
  }

  for (const version of ['-tls1_2', '-tls1_3'] as const)
    for (const who of ['alice', 'workload', 'teller', 'deep'])
      it(`lets ${who} (allowed) reach the echo backend over ${version}`, async (t) => {
        const bin = peer(t, 'openssl');
        if (!bin) return;
        const r = await sClient(bin, who, version);
        assert.match(r.stdout, new RegExp(`hello from ${who}`), r.stderr);
      });

  const refusals: [string | null, RegExp][] = [
    [null, /^no-certificate/],
    ['eve', /^untrusted-issuer: .*UNABLE_TO_VERIFY_LEAF_SIGNATURE/],
    ['mallory', /^revoked: .*CERT_REVOKED/],
    ['outsider', /^not-allowed: .*cn=outsider .*uri=spiffe:\/\/evil\.example\/payments\/x/],
  ];
  for (const version of ['-tls1_2', '-tls1_3'] as const)
    for (const [who, reason] of refusals)
      it(`refuses ${who ?? 'a client without a certificate'} over ${version}, naming the reason`, async (t) => {
        const bin = peer(t, 'openssl');
        if (!bin) return;
        const before = gw.events.events.length;
        const accepted = backend.accepted;
        const r = await sClient(bin, who, version);
        assert.doesNotMatch(r.stdout, /hello from/, 'nothing came back from the backend');
        await until(() => gw.events.events.length > before, 'the refusal event');
        const ev = gw.events.events.slice(before);
        assert.equal(ev.length, 1, JSON.stringify(ev));
        assert.equal(ev[0]!.kind, 'auth-failure');
        assert.equal(ev[0]!.action, 'rejected');
        assert.match(ev[0]!.reason!, reason);
        assert.equal(backend.accepted, accepted, 'no backend connection for a refused client');
      });
});
