import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseDatabaseUrl, redactDatabaseUrl } from '../../src/store/index.js';

test('database URLs: sqlite relative to dataDir, absolute, memory; postgres both schemes', () => {
  assert.deepEqual(parseDatabaseUrl('sqlite:registry.db', '/var/lib/sg'), {
    kind: 'sqlite',
    path: '/var/lib/sg/registry.db',
  });
  assert.deepEqual(parseDatabaseUrl('sqlite:/abs/x.db', '/d'), { kind: 'sqlite', path: '/abs/x.db' });
  assert.deepEqual(parseDatabaseUrl('sqlite:///abs/x.db', '/d'), { kind: 'sqlite', path: '/abs/x.db' });
  assert.deepEqual(parseDatabaseUrl('sqlite::memory:', '/d'), { kind: 'sqlite', path: ':memory:' });
  assert.equal(parseDatabaseUrl('postgres://u:p@h/db', '/d').kind, 'postgres');
  assert.equal(parseDatabaseUrl('postgresql://h/db', '/d').kind, 'postgres');
  for (const bad of ['mysql://h/db', 'sqlite:', 'registry.db', '', 'postgres://u:secret@[bad/x'])
    assert.throws(
      () => parseDatabaseUrl(bad, '/d'),
      (e: Error & { code?: string }) => e.code === 'ERR_STORE_URL' && !e.message.includes('secret'),
    );
});

test('redaction: the password of a URL never survives', () => {
  assert.equal(redactDatabaseUrl('postgres://u:pw@h:5432/db'), 'postgres://u:***@h:5432/db');
  assert.equal(redactDatabaseUrl('postgres://h/db?password=pw&x=1'), 'postgres://h/db?password=***&x=1');
  fc.assert(
    fc.property(
      fc.stringMatching(/^[A-Za-z0-9_]{1,12}$/),
      fc.stringMatching(/^[A-Za-z0-9_%~!$&'()*+,;=]{6,24}$/),
      fc.domain(),
      (user, password, host) => {
        const shown = redactDatabaseUrl(`postgres://${user}:${password}@${host}:5432/db`);
        return !shown.includes(`:${password}@`) && shown.includes(host);
      },
    ),
  );
});
