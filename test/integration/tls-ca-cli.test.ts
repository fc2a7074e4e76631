/**
 * `scangate ca init --force` replaces the CA (new fingerprint, key still 0600); `export --out` writes
 * the certificate only; `show` names the files. (Creation and reuse: test/integration/ca.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'scangate.js');
const dir = mkdtempSync(join(tmpdir(), 'sg-ca-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function scangate(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, SCANGATE_FROM_SOURCE: '1' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const fingerprint = (out: string) => /sha256:\s+(\S+)/.exec(out)?.[1];

test('ca init --force replaces the CA; export --out writes only the certificate; show names the files', () => {
  const data = join(dir, 'data');
  const first = scangate(['ca', 'init', '-d', data]);
  assert.equal(first.code, 0, first.err);
  const again = scangate(['ca', 'init', '-d', data]);
  assert.match(again.out, /^already present/);
  assert.equal(fingerprint(again.out), fingerprint(first.out));

  const forced = scangate(['ca', 'init', '--force', '-d', data]);
  assert.equal(forced.code, 0, forced.err);
  assert.match(forced.out, /^created/);
  assert.notEqual(fingerprint(forced.out), fingerprint(first.out));
  assert.equal(statSync(join(data, 'ca.key')).mode & 0o777, 0o600);

  const out = join(dir, 'exported.pem');
  const exported = scangate(['ca', 'export', '-d', data, '--out', out]);
  assert.equal(exported.code, 0, exported.err);
  assert.equal(exported.out, '');
  assert.equal(readFileSync(out, 'utf8'), readFileSync(join(data, 'ca.crt'), 'utf8'));
  assert.doesNotMatch(readFileSync(out, 'utf8'), /PRIVATE KEY/);

  const shown = scangate(['ca', 'show', '-d', data]);
  assert.match(shown.out, /subject:\s+CN=scangate interception CA/);
  assert.match(
    shown.out,
    new RegExp(`certificate: ${join(data, 'ca.crt').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
  );
  assert.match(shown.out, /not after:\s+\d{4}-/);
  assert.equal(fingerprint(shown.out), fingerprint(forced.out));
});
