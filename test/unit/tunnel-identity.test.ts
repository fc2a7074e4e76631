/**
 * Tunnel allow-lists and PROXY v2: SAN parsing that a crafted SAN cannot split, SPIFFE-style URI
 * wildcards, OR semantics, and the PROXY v2 codec (a known-answer header from the spec's layout,
 * round-trips, hostile input).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import {
  AllowPolicy,
  type ClientIdentity,
  compileUriPattern,
  parseSubjectAltNames,
  peerIdentity,
} from '../../src/protocols/tunnel/identity.js';
import {
  decodeProxyV2,
  decodeSslTlv,
  encodeProxyV2,
  PP2_SIGNATURE,
  PP2_SUBTYPE_SSL_CN,
  PP2_TYPE_SCANGATE_URI,
  sslTlv,
  tlv,
} from '../../src/protocols/tunnel/proxy-v2.js';
import { TunnelCa } from '../helpers/tunnel-pki.js';

function id(o: Partial<ClientIdentity>): ClientIdentity {
  return { cn: [], dns: [], uri: [], subject: '', fingerprint256: Buffer.alloc(32), ...o };
}

describe('tunnel identity and allow-lists', () => {
  it("parses Node's subjectaltname, including JSON-quoted values a naive split would cut", () => {
    assert.deepEqual(parseSubjectAltNames('DNS:a.example, URI:spiffe://t/x, IP Address:127.0.0.1'), {
      dns: ['a.example'],
      uri: ['spiffe://t/x'],
    });
    // A SAN value containing ", URI:" must stay one value, not smuggle a second name.
    assert.deepEqual(parseSubjectAltNames('DNS:"evil\\u002c URI:spiffe://bank/payments/x"'), {
      dns: ['evil, URI:spiffe://bank/payments/x'],
      uri: [],
    });
    assert.deepEqual(parseSubjectAltNames(undefined), { dns: [], uri: [] });
  });

  it('reads CN, SANs, fingerprint and subject from a real certificate; a CN with DN syntax in it stays one CN', async () => {
    const ca = await TunnelCa.create();
    const tricky = "O'Brien, Treasury +1 <x>; Zürich ✓ 𝄞\nCN=forged";
    const c = await ca.issue({ commonName: tricky, dns: ['a.example'], uri: ['spiffe://b/p/x'] });
    const x = new X509Certificate(c.certPem);
    // toLegacyObject() is what a TLS socket's getPeerCertificate() returns for the same certificate.
    const got = peerIdentity({ getPeerCertificate: () => x.toLegacyObject() } as unknown as TLSSocket)!;
    assert.deepEqual(got.cn, [tricky]);
    assert.deepEqual(got.dns, ['a.example']);
    assert.deepEqual(got.uri, ['spiffe://b/p/x']);
    assert.equal(got.fingerprint256.toString('hex'), x.fingerprint256.replace(/:/g, '').toLowerCase());
    assert.equal(got.subject, x.subject);
    assert.equal(got.subject.split('\n').length, 2, 'the CN line cannot fake a second line');
    // No certificate: {} from a live socket, null from a closed one.
    assert.equal(peerIdentity({ getPeerCertificate: () => ({}) } as unknown as TLSSocket), null);
    assert.equal(peerIdentity({ getPeerCertificate: () => null } as unknown as TLSSocket), null);
  });

  it('URI patterns: * is one path segment, ** any number; wildcards in scheme or authority refused', () => {
    const one = compileUriPattern('spiffe://bank.example/payments/*');
    assert.ok(one.test('spiffe://bank.example/payments/alice'));
    assert.ok(!one.test('spiffe://bank.example/payments/eu/alice'));
    assert.ok(!one.test('spiffe://bank.example.evil/payments/alice'));
    const many = compileUriPattern('spiffe://bank.example/payments/**');
    assert.ok(many.test('spiffe://bank.example/payments/eu/fr/alice'));
    assert.ok(!many.test('spiffe://bank.example/other/x'));
    const dots = compileUriPattern('spiffe://bank.example/a.b');
    assert.ok(!dots.test('spiffe://bank.example/aXb'), 'dots are literal');
    assert.throws(() => compileUriPattern('spiffe://*.example/x'), /only allowed in the path/);
    assert.throws(() => compileUriPattern('*://bank/x'), /only allowed in the path/);
  });

  it('allow-lists are ORed; all empty allows any verified certificate', () => {
    const p = new AllowPolicy({ cn: ['alice'], dns: ['Teller.Bank.Example'], uri: ['spiffe://b/p/*'] });
    assert.ok(p.check(id({ cn: ['alice'] })).allowed);
    assert.ok(p.check(id({ cn: ['x'], dns: ['teller.bank.example'] })).allowed);
    assert.ok(p.check(id({ uri: ['spiffe://b/p/q'] })).allowed);
    assert.ok(!p.check(id({ cn: ['Alice'] })).allowed, 'CN matches exactly');
    assert.ok(!p.check(id({ uri: ['spiffe://b/p/q/r'] })).allowed);
    assert.ok(new AllowPolicy({ cn: [], dns: [], uri: [] }).check(id({})).allowed);
  });
});

describe('PROXY protocol v2', () => {
  it('writes the spec layout: signature, 0x21, TCP4 0x11, length, addresses, TLVs', () => {
    const h = encodeProxyV2({ address: '10.0.0.1', port: 1234 }, { address: '::ffff:10.0.0.2', port: 7443 }, [
      tlv(0xe0, 'CN=a'),
    ]);
    const expected = Buffer.concat([
      PP2_SIGNATURE,
      Buffer.from([0x21, 0x11, 0x00, 12 + 3 + 4]),
      Buffer.from([10, 0, 0, 1, 10, 0, 0, 2, 0x04, 0xd2, 0x1d, 0x13]),
      Buffer.from([0xe0, 0x00, 0x04]),
      Buffer.from('CN=a'),
    ]);
    assert.deepEqual(h, expected);
  });

  it('property: headers round-trip (v4 and v6, nested SSL TLVs)', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
    const v6 = fc
      .array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
      .map((g) => g.map((x) => x.toString(16)).join(':'));
    fc.assert(
      fc.property(
        fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6)),
        fc.nat(65535),
        fc.nat(65535),
        fc.array(fc.string({ maxLength: 40 }), { maxLength: 5 }),
        ([src, dst], sp, dp, uris) => {
          const tlvs = [
            sslTlv({ client: 7, verify: 0, sub: [tlv(PP2_SUBTYPE_SSL_CN, 'alice')] }),
            ...uris.map((u) => tlv(PP2_TYPE_SCANGATE_URI, u)),
          ];
          const wire = encodeProxyV2({ address: src, port: sp }, { address: dst, port: dp }, tlvs);
          const r = decodeProxyV2(Buffer.concat([wire, Buffer.from('payload')]))!;
          assert.equal(r.length, wire.length);
          assert.equal(r.header.source!.port, sp);
          assert.equal(r.header.destination!.port, dp);
          if (r.header.family === 'TCP4') assert.equal(r.header.source!.address, src);
          assert.deepEqual(
            r.header.tlvs.filter((t) => t.type === PP2_TYPE_SCANGATE_URI).map((t) => t.value.toString()),
            uris,
          );
          const ssl = decodeSslTlv(r.header.tlvs[0]!.value);
          assert.equal(ssl.sub[0]!.value.toString(), 'alice');
          // Every proper prefix asks for more bytes.
          assert.equal(decodeProxyV2(wire.subarray(0, wire.length - 1)), null);
        },
      ),
    );
  });

  it('property: hostile input only ever yields ProtocolError or "need more"', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (bytes, withSig) => {
        const buf = withSig ? Buffer.concat([PP2_SIGNATURE, Buffer.from(bytes)]) : Buffer.from(bytes);
        try {
          decodeProxyV2(buf);
        } catch (e) {
          assert.ok(e instanceof ProtocolError, String(e));
        }
      }),
    );
  });
});
