/**
 * Passthrough patterns (exact, *.domain, .domain) and learned hosts with their TTL on an injected clock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MemoryEventSink } from '../../src/admin/events.js';
import { ConfigError } from '../../src/errors.js';
import { PassthroughPolicy } from '../../src/tls/passthrough.js';

test('patterns: exact host, *.subdomains only, .domain and subdomains; case and trailing dot ignored', () => {
  const p = new PassthroughPolicy(['Example.com', '*.bank.example', '.updates.example', '192.0.2.7'], 0);
  assert.equal(p.shouldPassthrough('example.com'), true);
  assert.equal(p.shouldPassthrough('EXAMPLE.COM.'), true);
  assert.equal(p.shouldPassthrough('www.example.com'), false);
  assert.equal(p.shouldPassthrough('bank.example'), false);
  assert.equal(p.shouldPassthrough('online.bank.example'), true);
  assert.equal(p.shouldPassthrough('a.b.bank.example'), true);
  assert.equal(p.shouldPassthrough('evilbank.example'), false);
  assert.equal(p.shouldPassthrough('updates.example'), true);
  assert.equal(p.shouldPassthrough('dl.updates.example'), true);
  assert.equal(p.shouldPassthrough('notupdates.example'), false);
  assert.equal(p.shouldPassthrough('192.0.2.7'), true);
  assert.equal(p.shouldPassthrough(''), false);
});

test('bad patterns are configuration errors', () => {
  for (const bad of ['', '*', 'a.*.example', 'two words']) {
    assert.throws(() => new PassthroughPolicy([bad], 0), ConfigError, bad);
  }
});

test('learned hosts pass through until the TTL expires, then are intercepted again', () => {
  let now = 1_000_000;
  const events = new MemoryEventSink();
  const p = new PassthroughPolicy([], 60_000, undefined, events, { now: () => now });
  assert.equal(p.shouldPassthrough('pinned.example'), false);
  p.learn('Pinned.Example', 'client rejected our certificate: unknown_ca', {
    listener: 'web',
    protocol: 'https',
    client: '127.0.0.1:5',
  });
  assert.equal(p.shouldPassthrough('pinned.example'), true);
  assert.equal(events.events.length, 1);
  assert.equal(events.events[0]!.kind, 'passthrough-learned');
  assert.equal(events.events[0]!.listener, 'web');
  assert.equal(events.events[0]!.object, 'pinned.example');
  now += 59_999;
  assert.equal(p.shouldPassthrough('pinned.example'), true);
  assert.deepEqual(
    p.learnedHosts().map((h) => h.host),
    ['pinned.example'],
  );
  now += 1;
  assert.equal(p.shouldPassthrough('pinned.example'), false);
  assert.deepEqual(p.learnedHosts(), []);
});

test('learning again renews the TTL; a TTL of 0 disables learning; the list is bounded', () => {
  let now = 0;
  const p = new PassthroughPolicy([], 100, undefined, undefined, { now: () => now, maxLearned: 3 });
  p.learn('a.test', 'x');
  now = 90;
  p.learn('a.test', 'x');
  now = 150;
  assert.equal(p.shouldPassthrough('a.test'), true);
  for (const h of ['b.test', 'c.test', 'd.test']) p.learn(h, 'x');
  assert.equal(p.shouldPassthrough('a.test'), false, 'oldest forgotten beyond maxLearned');
  assert.equal(p.shouldPassthrough('d.test'), true);
  const off = new PassthroughPolicy([], 0);
  off.learn('a.test', 'x');
  assert.equal(off.shouldPassthrough('a.test'), false);
});

test('property: any host under a *.domain pattern matches, and nothing outside it', () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
  fc.assert(
    fc.property(
      fc.array(label, { minLength: 1, maxLength: 4 }),
      fc.array(label, { minLength: 1, maxLength: 3 }),
      (sub, dom) => {
        const domain = dom.join('.');
        const p = new PassthroughPolicy([`*.${domain}`], 0);
        assert.equal(p.shouldPassthrough(`${sub.join('.')}.${domain}`), true);
        assert.equal(p.shouldPassthrough(domain), false);
        assert.equal(p.shouldPassthrough(`x${domain}`), false);
      },
    ),
    { numRuns: 500 },
  );
});
