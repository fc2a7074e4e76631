/**
 * withoutPeerCertificate on real sessions of OpenSSL (through node:tls, TLS 1.3 and 1.2): a TLS 1.3
 * session loses the server's certificate and still resumes as authorized; a TLS 1.2 one is left
 * whole; and no input, however malformed, makes it throw or return something longer.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createSecureContext, createServer, type Server, connect as tlsConnect } from 'node:tls';
import fc from 'fast-check';
import { withoutPeerCertificate } from '../../src/tls/session-der.js';
import { TestCa, type TestCert } from '../helpers/pki.js';

let ca: TestCa;
let cert: TestCert;
const servers: Server[] = [];

before(async () => {
  ca = await TestCa.create('session test CA');
  cert = await ca.issue({ dnsNames: ['origin.test'] });
});
after(() => {
  for (const s of servers) s.close();
});

async function origin(maxVersion: 'TLSv1.2' | 'TLSv1.3'): Promise<number> {
  const server = createServer({ key: cert.keyPem, cert: cert.chainPem, maxVersion }, (s) => {
    s.on('error', () => {});
    s.end('hello');
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

interface Outcome {
  session: Buffer;
  reused: boolean;
  authorized: boolean;
}

/** One connection (verifying against our CA, as connectUpstreamTls does); its first session. */
function connectOnce(port: number, session?: Buffer): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'origin.test',
      secureContext: createSecureContext({ ca: ca.certPem }),
      rejectUnauthorized: false,
      ...(session ? { session } : {}),
    });
    let first: Buffer | undefined;
    s.on('session', (b: Buffer) => {
      first ??= b;
    });
    s.on('error', reject);
    s.resume();
    s.on('end', () =>
      resolve({ session: first ?? Buffer.alloc(0), reused: s.isSessionReused(), authorized: s.authorized }),
    );
  });
}

describe('withoutPeerCertificate', () => {
  test('a TLS 1.3 session drops the certificate and still resumes, authorized', async () => {
    const port = await origin('TLSv1.3');
    const full = await connectOnce(port);
    assert.equal(full.authorized, true);
    const der = Buffer.from(cert.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    assert.ok(full.session.includes(der), 'OpenSSL keeps the certificate in the session');
    const trimmed = withoutPeerCertificate(full.session);
    assert.ok(!trimmed.includes(der));
    assert.ok(trimmed.length < full.session.length - der.length + 8);
    const again = await connectOnce(port, trimmed);
    assert.equal(again.reused, true);
    assert.equal(again.authorized, true);
  });

  test('a TLS 1.2 session is returned as it is (it would resume unauthorized without its certificate)', async () => {
    const port = await origin('TLSv1.2');
    const full = await connectOnce(port);
    assert.equal(withoutPeerCertificate(full.session), full.session);
    const again = await connectOnce(port, full.session);
    assert.equal(again.reused, true);
    assert.equal(again.authorized, true);
  });

  test('malformed input never throws and is never made longer', () => {
    const sample = fc.oneof(
      fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
      // DER-like: a SEQUENCE header over random contents, with the TLS 1.3 version field in front.
      fc
        .uint8Array({ maxLength: 300 })
        .map((a) => Buffer.concat([Buffer.from([0x02, 0x01, 0x01, 0x02, 0x02, 0x03, 0x04]), a]))
        .map((body) =>
          Buffer.concat([Buffer.from([0x30, 0x82, body.length >> 8, body.length & 0xff]), body]),
        ),
    );
    fc.assert(
      fc.property(sample, (input) => {
        const out = withoutPeerCertificate(input);
        assert.ok(out === input || (out.length < input.length && out[0] === 0x30));
      }),
      { numRuns: 2000 },
    );
  });
});
