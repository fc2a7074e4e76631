import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { RegistryError } from '../../src/registry/errors.js';
import { decodeBase64Strict, makeProof, parsePublicKey, verifyProof } from '../../src/registry/keys.js';

test('strict base64: every encoding of any bytes decodes back; junk is a 400', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), (u) => {
      const b = Buffer.from(u);
      for (const text of [
        b.toString('base64'),
        b.toString('base64url'),
        b.toString('base64').replace(/=+$/, ''),
      ])
        assert.deepEqual(decodeBase64Strict(text, 'k'), b);
      return true;
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (s) => {
      try {
        const b = decodeBase64Strict(s, 'k');
        return b.length > 0;
      } catch (e) {
        return e instanceof RegistryError && e.status === 400;
      }
    }),
  );
  for (const bad of ['', '!!!!', 'QUJD=', 'QQ=A', 'A', 'QUJ D%'])
    assert.throws(() => decodeBase64Strict(bad, 'k'), RegistryError, bad);
});

test('keys: Ed25519 as PEM, DER or raw 32 bytes (same id); RSA ≥ 2048 only; proofs verify only for their signature', () => {
  const ed = generateKeyPairSync('ed25519');
  const der = ed.publicKey.export({ format: 'der', type: 'spki' });
  const ids = [
    parsePublicKey(ed.publicKey.export({ format: 'pem', type: 'spki' }).toString()),
    parsePublicKey(der.toString('base64')),
    parsePublicKey(der.subarray(12).toString('base64')),
  ].map((k) => k.id);
  assert.equal(new Set(ids).size, 1);
  const sig = 'a'.repeat(128);
  const k = parsePublicKey(der.toString('base64')).key;
  assert.ok(verifyProof(k, sig, makeProof(ed.privateKey, sig)));
  assert.ok(!verifyProof(k, 'b'.repeat(128), makeProof(ed.privateKey, sig)));
  assert.ok(!verifyProof(k, sig, Buffer.alloc(64)));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const rk = parsePublicKey(rsa.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'));
  assert.equal(rk.algorithm, 'rsa');
  assert.ok(verifyProof(rk.key, sig, makeProof(rsa.privateKey, sig)));
  assert.throws(
    () =>
      parsePublicKey(
        generateKeyPairSync('rsa', { modulusLength: 1024 })
          .publicKey.export({ format: 'pem', type: 'spki' })
          .toString(),
      ),
    /at least 2048/,
  );
  assert.throws(
    () =>
      parsePublicKey(
        generateKeyPairSync('ed448').publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      ),
    /unsupported key type/,
  );
  assert.throws(() => parsePublicKey('x'.repeat(20_000)), /too long/);
});
