/**
 * The admin's small parsers under hostile input: the token a request presents (Authorization and
 * Cookie headers), the client address split for the event store, the bounded reason label of a TLS
 * failure, and constant-time token comparison.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { hostOf } from '../../src/admin/event-store.js';
import { reasonOf } from '../../src/admin/metrics.js';
import { COOKIE, presentedToken, tokenMatches } from '../../src/admin/token.js';

test('presentedToken: Bearer header first, then the dashboard cookie; anything else is no token', () => {
  assert.equal(presentedToken({ authorization: 'Bearer abc' }), 'abc');
  assert.equal(presentedToken({ authorization: 'bearer   abc  ' }), 'abc');
  assert.equal(presentedToken({ authorization: 'Basic abc' }), null);
  assert.equal(presentedToken({ authorization: 'Bearer a b' }), null);
  assert.equal(presentedToken({ authorization: 'Bearer x', cookie: `${COOKIE}=y` }), 'x');
  assert.equal(presentedToken({ cookie: `a=1; ${COOKIE}=tok%3D; b=2` }), 'tok=');
  assert.equal(presentedToken({ cookie: 'a=1' }), null);
  assert.equal(presentedToken({ cookie: `${COOKIE}=%E0%A4%A` }), null, 'a malformed escape is no token');
  assert.equal(presentedToken({}), null);
});

test('property: presentedToken never throws and returns null or a non-empty token without spaces', () => {
  fc.assert(
    fc.property(
      fc.option(fc.string({ maxLength: 300 })),
      fc.option(fc.string({ maxLength: 300 })),
      (a, c) => {
        const headers = { ...(a !== null ? { authorization: a } : {}), ...(c !== null ? { cookie: c } : {}) };
        const t = presentedToken(headers);
        if (t !== null && a !== null) assert.ok(!/\s/.test(t));
      },
    ),
    { numRuns: 3000 },
  );
});

test('tokenMatches: equal strings only, any lengths, absent never matches', () => {
  assert.ok(tokenMatches('secret-token-value', 'secret-token-value'));
  assert.ok(!tokenMatches('secret-token-value', 'secret-token-valuE'));
  assert.ok(!tokenMatches('secret-token-value', 'secret'));
  assert.ok(!tokenMatches('secret-token-value', ''));
  assert.ok(!tokenMatches('secret-token-value', null));
  fc.assert(
    fc.property(fc.string(), fc.string(), (a, b) => assert.equal(tokenMatches(a, b), a === b && b !== '')),
  );
});

test('hostOf: the address without its port, for v4, bracketed v6 and anything else', () => {
  assert.equal(hostOf('10.1.2.3:443'), '10.1.2.3');
  assert.equal(hostOf('[2001:db8::1]:25'), '2001:db8::1');
  assert.equal(hostOf('::1'), '::1');
  assert.equal(hostOf('name-only'), 'name-only');
  assert.equal(hostOf(undefined), null);
  fc.assert(
    fc.property(fc.ipV4(), fc.integer({ min: 0, max: 65535 }), (ip, port) =>
      assert.equal(hostOf(`${ip}:${port}`), ip),
    ),
  );
  fc.assert(
    fc.property(fc.ipV6(), fc.integer({ min: 0, max: 65535 }), (ip, port) =>
      assert.equal(hostOf(`[${ip}]:${port}`), ip),
    ),
  );
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => void hostOf(s)));
});

test('reasonOf: error codes as they are, TLS alerts and timeouts named, everything else "other"', () => {
  assert.equal(
    reasonOf(Object.assign(new Error('x'), { code: 'ERR_TLS_CLIENT_TIMEOUT' })),
    'ERR_TLS_CLIENT_TIMEOUT',
  );
  assert.equal(reasonOf(new Error('SSL alert number 48: tlsv1 alert unknown ca')), 'alert_unknown_ca');
  assert.equal(reasonOf(new Error('TLS handshake timeout')), 'timeout');
  assert.equal(reasonOf(new Error('weird')), 'other');
  assert.equal(reasonOf('not an error'), 'other');
  assert.equal(reasonOf(null), 'other');
  // Labels stay few and short whatever the message: Prometheus series must not grow with input.
  fc.assert(
    fc.property(fc.string({ maxLength: 500 }), fc.option(fc.string({ maxLength: 80 })), (message, code) => {
      const r = reasonOf(Object.assign(new Error(message), code === null ? {} : { code }));
      assert.ok(r.length <= 64 + 6, r);
      assert.match(r, /^[A-Za-z0-9_]+$/);
    }),
    { numRuns: 3000 },
  );
});
