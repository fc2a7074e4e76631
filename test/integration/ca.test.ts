/**
 * The interception CA as an operator meets it: `scangate ca init` creates it with a private key
 * (0600 in a 0700 folder), a second init keeps it, `show` and `export` print it, and openssl reads
 * it as an ECDSA P-256 CA.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { peer } from '../helpers/peers.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'scangate.js');
const dir = mkdtempSync(join(tmpdir(), 'sg-ca-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function scangate(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, SCANGATE_FROM_SOURCE: '1' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('ca init creates a P-256 CA with a 0600 key, and keeps it on the next init', (t) => {
  const openssl = peer(t, 'openssl');
  if (!openssl) return;
  const data = join(dir, 'data');
  const first = scangate(['ca', 'init', '-d', data]);
  assert.equal(first.code, 0, first.err);
  assert.match(first.out, /^created/);
  assert.equal(statSync(join(data, 'ca.key')).mode & 0o777, 0o600);
  assert.equal(statSync(data).mode & 0o077, 0);
  const fp = /sha256:\s+(\S+)/.exec(first.out)![1];

  const second = scangate(['ca', 'init', '-d', data]);
  assert.match(second.out, /^already present/);
  assert.equal(/sha256:\s+(\S+)/.exec(second.out)![1], fp);

  const text = execFileSync(openssl, ['x509', '-in', join(data, 'ca.crt'), '-noout', '-text'], {
    encoding: 'utf8',
  });
  assert.match(text, /CA:TRUE/);
  assert.match(text, /Certificate Sign, CRL Sign/);
  assert.match(text, /prime256v1|P-256/);
  assert.match(text, /scangate interception CA/);

  const exported = scangate(['ca', 'export', '-d', data]);
  assert.equal(exported.out, readFileSync(join(data, 'ca.crt'), 'utf8'));
  assert.doesNotMatch(exported.out, /PRIVATE KEY/);
  const shown = scangate(['ca', 'show', '-d', data]);
  assert.match(shown.out, new RegExp(fp!));
});

test('ca show without a CA fails with a clear error', () => {
  const r = scangate(['ca', 'show', '-d', join(dir, 'empty')]);
  assert.equal(r.code, 2);
  assert.match(r.err, /no CA at .*scangate ca init/);
});
