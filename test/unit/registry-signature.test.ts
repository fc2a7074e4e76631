/**
 * The registry signature and its canonical form (README "Anti-phishing registry"): the documented
 * test vectors, the transport-tolerance properties the issue names (LF/CRLF, trailing white space,
 * trailing blank lines), chunking invariance of the streaming canonicalizer, NFC, injectivity on
 * bytes that are not UTF-8, and hostile inputs for addresses, dates and confirmation numbers.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalAddress, canonicalDate } from '../../src/registry/address.js';
import { BodyCanonicalizer, canonicalBody } from '../../src/registry/canonical.js';
import { newConfirmationNo, parseConfirmationNo } from '../../src/registry/confirmation.js';
import { RegistryError } from '../../src/registry/errors.js';
import { messageSignature, SignatureHasher } from '../../src/registry/signature.js';

/** The README's test vectors: keep the two in step. */
export const VECTORS = [
  {
    from: 'Alice@Example.COM',
    to: 'bob@example.org',
    date: '20261123',
    content: 'Hello world\n',
    signature:
      'a8874d0d30efd5cf1bbc62d613c40256e8951760e488796f1c8b14d2c6a1f1ec0fb09e957e7dbeaa63f7c10a2e89e61013f8de6edcc83800497a9dbc2ee7dd7b',
  },
  {
    from: 'alice@example.com',
    to: 'bob@example.org',
    date: '20261123',
    content: '',
    signature:
      'c8f408ded4c3af3135e2cbeea08143f8dba7082b5f4bc78ebdeadbbc2172640b1c31ab20b94bd614ad9fdc2c44b799bdd858417f0d57219554c8263dddf3511f',
  },
  {
    from: 'webmaster@Bank.Example',
    to: 'kim@xn--bcher-kva.example',
    date: '20240229',
    content: 'Cafe\u0301 \t au lait \r\n\r\n',
    signature:
      'ce83f107d9f13288bac43410bd3195f84bf6da1d9c76830b5a8331b2d7b14b1c906497a0957bced2169c01a1597ba4267e5fe8e75debd3dd366b984277a185cf',
  },
];

const F = { from: 'Alice@Example.COM', to: 'bob@example.org', date: '20261123' };

test('README test vectors, and the documented form hashed by hand gives the same', () => {
  for (const v of VECTORS) assert.equal(messageSignature(v), v.signature);
  const byHand = createHash('sha512')
    .update(
      'scangate-registry-signature:1\r\nfrom:webmaster@bank.example\r\nto:kim@bücher.example\r\ndate:20240229\r\n\r\nCafé au lait\r\n',
    )
    .digest('hex');
  assert.equal(byHand, VECTORS[2]?.signature);
  // The same vector, re-encoded the ways transport re-encodes: identical signature.
  const base = VECTORS[0]!;
  for (const content of ['Hello world', 'Hello world\r\n', 'Hello  world \t\r\n\r\n\n', 'Hello\tworld\n\n'])
    assert.equal(messageSignature({ ...base, content }), base.signature, JSON.stringify(content));
  assert.equal(
    messageSignature({ ...base, from: 'Alice@example.com' }),
    base.signature,
    'domain case folded',
  );
  assert.notEqual(
    messageSignature({ ...base, from: 'alice@Example.COM' }),
    base.signature,
    'local part kept',
  );
  assert.notEqual(messageSignature({ ...base, content: 'Hello World\n' }), base.signature);
  assert.notEqual(
    messageSignature({ ...base, content: 'Helloworld\n' }),
    base.signature,
    'white space removed is a change',
  );
});

test('canonical body: RFC 6376 §3.4.4 relaxed rules', () => {
  const c = (s: string | Uint8Array) => canonicalBody(s).toString('latin1');
  assert.equal(c(''), '');
  assert.equal(c('\r\n\r\n'), '', 'only blank lines: empty');
  assert.equal(c('a'), 'a\r\n', 'CRLF added');
  assert.equal(c(' a  b\t \r\n'), ' a b\r\n', 'leading WSP kept as one SP');
  assert.equal(c('a\n\n\nb\n\n'), 'a\r\n\r\n\r\nb\r\n', 'inner blank lines kept');
  assert.equal(c('a\rb\n'), 'a\rb\r\n', 'a lone CR is content');
  assert.equal(canonicalBody('e\u0301').toString('utf8'), '\u00e9\r\n', 'NFC');
  assert.equal(canonicalBody('\u212b').toString('utf8'), '\u00c5\r\n', 'NFC: Angstrom sign');
  assert.deepEqual(
    canonicalBody(Buffer.from([0x61, 0xff, 0xfe, 0x0a])),
    Buffer.from([0x61, 0xff, 0xfe, 0x0d, 0x0a]),
  );
});

function canonicalInChunks(bytes: Uint8Array, cuts: number[]): Buffer {
  const out: Buffer[] = [];
  const c = new BodyCanonicalizer((b) => out.push(b));
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    const to = Math.min(bytes.length, cut);
    if (to > at) c.write(bytes.subarray(at, to));
    at = Math.max(at, to);
  }
  c.write(bytes.subarray(at));
  c.end();
  return Buffer.concat(out);
}

const textish = fc
  .array(
    fc.oneof(
      fc.constantFrom('\n', '\r\n', '\r', ' ', '\t', '  ', 'e\u0301', 'é', '\u00ff', '😀', '\u212b'),
      fc.string({ maxLength: 6 }),
    ),
    { maxLength: 40 },
  )
  .map((a) => a.join(''));

test('property: CRLF ≡ LF, trailing white space and trailing blank lines never matter', () => {
  // Lone CRs are content (only CR before LF is a line ending), so they are left out here.
  const noLoneCr = textish.map((t) => t.replace(/\r(?!\n)/g, ''));
  fc.assert(
    fc.property(noLoneCr, fc.nat(4), fc.constantFrom(' ', '\t', ' \t '), (text, blanks, wsp) => {
      const sig = messageSignature({ ...F, content: text });
      const crlf = text.replace(/\r?\n/g, '\r\n');
      const lf = text.replace(/\r\n/g, '\n');
      const padded = `${lf.replace(/\n/g, `${wsp}\n`)}${'\n'.repeat(blanks)}`;
      return (
        messageSignature({ ...F, content: crlf }) === sig &&
        messageSignature({ ...F, content: lf }) === sig &&
        // Trailing WSP before each line end and extra blank lines at the end.
        messageSignature({
          ...F,
          content: lf.endsWith('\n') || lf === '' ? padded : `${padded.replace(/\n*$/, '')}${wsp}`,
        }) === messageSignature({ ...F, content: lf })
      );
    }),
    { numRuns: 500 },
  );
});

test('property: the streaming canonicalizer gives the same bytes however the input is cut', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        textish.map((s) => Buffer.from(s)),
        fc.uint8Array({ maxLength: 300 }),
      ),
      fc.array(fc.nat(320), { maxLength: 8 }),
      (bytes, cuts) => {
        assert.deepEqual(canonicalInChunks(bytes, cuts), canonicalBody(bytes));
        return true;
      },
    ),
    { numRuns: 500 },
  );
});

test('a line longer than the hold limit streams in pieces and still canonicalizes exactly', () => {
  const line = `${'ab  '.repeat(400_000)}e\u0301 end  \n\n`; // 1.6 MB in one line
  const whole = canonicalBody(line);
  const parts: Buffer[] = [];
  const c = new BodyCanonicalizer((b) => parts.push(b));
  const bytes = Buffer.from(line);
  for (let i = 0; i < bytes.length; i += 65_536) c.write(bytes.subarray(i, i + 65_536));
  c.end();
  assert.ok(parts.length > 1, 'emitted before the end of the line');
  assert.deepEqual(Buffer.concat(parts), whole);
  assert.equal(whole.toString('utf8'), `${'ab '.repeat(400_000)}\u00e9 end\r\n`);
});

test('property: bodies that are not UTF-8 sign injectively (no U+FFFD collapse)', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 40 }),
      fc.uint8Array({ minLength: 1, maxLength: 40 }),
      (a, b) => {
        const ca = canonicalBody(a);
        const cb = canonicalBody(b);
        // Equal canonical forms only when the inputs are equal modulo the relaxed rules.
        if (ca.equals(cb)) assert.deepEqual(canonicalBody(ca), canonicalBody(cb));
        return !Buffer.from(a).equals(Buffer.from(b)) || ca.equals(cb);
      },
    ),
  );
  assert.notEqual(
    messageSignature({ ...F, content: Buffer.from([0xff]) }),
    messageSignature({ ...F, content: Buffer.from([0xfe]) }),
  );
  assert.notEqual(
    messageSignature({ ...F, content: Buffer.from([0xff]) }),
    messageSignature({ ...F, content: '\ufffd' }),
  );
});

test('property: canonical form is idempotent and the hasher equals the one-shot signature', () => {
  fc.assert(
    fc.property(textish, fc.array(fc.nat(200), { maxLength: 5 }), (text, cuts) => {
      const once = canonicalBody(text);
      assert.deepEqual(canonicalBody(once), once);
      const h = new SignatureHasher(F);
      let at = 0;
      const bytes = Buffer.from(text);
      for (const cut of [...cuts].sort((x, y) => x - y)) {
        h.update(bytes.subarray(at, Math.max(at, Math.min(cut, bytes.length))));
        at = Math.max(at, Math.min(cut, bytes.length));
      }
      h.update(bytes.subarray(at));
      return h.digest() === messageSignature({ ...F, content: text });
    }),
  );
});

test('addresses: 256 Unicode characters at most, domain lower-cased, IDNA A-labels shown as U-labels', () => {
  assert.equal(canonicalAddress('  Bob@EXAMPLE.org '), 'Bob@example.org');
  assert.equal(canonicalAddress('bob@xn--bcher-kva.example'), 'bob@bücher.example');
  assert.equal(canonicalAddress('bob@BÜCHER.example'), 'bob@bücher.example');
  assert.equal(canonicalAddress('Jose\u0301@example.com'), 'Jos\u00e9@example.com');
  const at256 = `${'𝔸'.repeat(244)}@example.com`; // astral characters count once each
  assert.equal([...at256].length, 256);
  assert.equal(canonicalAddress(at256), at256);
  for (const bad of [
    `${'𝔸'.repeat(245)}@example.com`,
    'a@b@',
    'a b@c.d',
    'a@b\r\nBcc: x@y',
    '<a@b>',
    'a@.b',
    'a@b.',
    '\ud800@x.y',
    '',
    'a@',
    '@b',
    null,
    7,
  ])
    assert.throws(
      () => canonicalAddress(bad),
      (e: RegistryError) => e instanceof RegistryError && e.status === 400,
      String(bad),
    );
  fc.assert(
    fc.property(fc.emailAddress(), (a) => {
      const c = canonicalAddress(a);
      return canonicalAddress(c) === c;
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 300, unit: 'grapheme' }), (s) => {
      try {
        const c = canonicalAddress(s);
        return [...c].length <= 256 && c.includes('@');
      } catch (e) {
        return e instanceof RegistryError && e.status === 400;
      }
    }),
  );
});

test('dates: 8 digits that name a real calendar day', () => {
  for (const ok of ['20240229', '20000229', '19991231', '00010101']) assert.equal(canonicalDate(ok), ok);
  for (const bad of [
    '20251399',
    '20250229',
    '19000229',
    '20250431',
    '20250000',
    '2025-1-1',
    '2025123',
    '202512310',
    '２０２５１２３１',
    20251231,
  ])
    assert.throws(() => canonicalDate(bad), RegistryError, String(bad));
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 9999 }),
      fc.integer({ min: 0, max: 13 }),
      fc.integer({ min: 0, max: 32 }),
      (y, m, d) => {
        const text = `${String(y).padStart(4, '0')}${String(m).padStart(2, '0')}${String(d).padStart(2, '0')}`;
        const dt = new Date(0);
        dt.setUTCFullYear(y, m - 1, d);
        const real = m >= 1 && m <= 12 && d >= 1 && dt.getUTCMonth() === m - 1 && dt.getUTCDate() === d;
        let accepted = true;
        try {
          canonicalDate(text);
        } catch {
          accepted = false;
        }
        return accepted === real;
      },
    ),
  );
});

test('confirmation numbers: year, month-day, hour, address, random part; parse inverts', () => {
  const at = new Date(Date.UTC(2015, 3, 22, 8, 0, 0));
  const n = newConfirmationNo('ABC@example.com', at);
  assert.match(n, /^2015042208ABC@example\.com[A-Za-z0-9]{8}$/);
  assert.deepEqual(parseConfirmationNo(n), {
    year: 2015,
    month: 4,
    day: 22,
    hour: 8,
    address: 'ABC@example.com',
    random: n.slice(-8),
  });
  const seen = new Set(Array.from({ length: 2000 }, () => newConfirmationNo('a@b.c', at)));
  assert.equal(seen.size, 2000, 'random parts differ');
  fc.assert(
    fc.property(
      fc.emailAddress(),
      fc.date({ min: new Date(0), max: new Date(Date.UTC(9999, 0, 1)), noInvalidDate: true }),
      (a, d) => {
        const p = parseConfirmationNo(newConfirmationNo(a, d));
        return p !== null && p.address === a && p.year === d.getUTCFullYear() && p.hour === d.getUTCHours();
      },
    ),
  );
  for (const bad of ['', '2015042208', 'x'.repeat(2000), '2015132208a@bWetResZx', '2015042225a@bWetResZx'])
    assert.equal(parseConfirmationNo(bad), null);
});
