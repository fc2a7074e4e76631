/**
 * The sender's side of the registry from the command line: `scangate registry account | address
 * add/confirm/list/remove | keygen | key add`, and `scangate sign` (arguments, stdin, --mail), with
 * their exit codes (0, and 2 with a one-line reason on bad input).
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { queryOfMail } from '../../src/registry/mailcheck.js';
import { confirmationLink, registryForTest, scangateCli, waitForMail } from '../helpers/registry.js';

test('scangate registry account/address/keygen/key and sign, as a sender uses them', async (t) => {
  const reg = await registryForTest(t, 'sqlite');
  if (!reg) return;
  const base = reg.registry.url;
  const dir = reg.dataDir;
  const tokenFile = join(dir, 'bank.token');
  const keyFile = join(dir, 'bank.pem');
  const withToken = ['--registry', base, '--token-file', tokenFile];

  const account = await scangateCli([
    'registry',
    'account',
    'Example Bank',
    '--registry',
    base,
    '--token-out',
    tokenFile,
  ]);
  assert.equal(account.code, 0, account.err);
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  assert.ok(
    !account.out.includes(readFileSync(tokenFile, 'utf8').trim()),
    'token not printed when written to a file',
  );

  const add = await scangateCli(['registry', 'address', 'add', 'notices@bank.example', ...withToken]);
  assert.equal(add.code, 0, add.err);
  await waitForMail(reg.mail, 1);
  const link = confirmationLink(reg.mail.messages[0]?.data ?? Buffer.alloc(0));
  const confirm = await scangateCli([
    'registry',
    'address',
    'confirm',
    link.searchParams.get('ref') ?? '',
    link.searchParams.get('code') ?? '',
    '--registry',
    base,
  ]);
  assert.equal(confirm.code, 0, confirm.err);
  assert.match(confirm.out, /notices@bank\.example confirmed/);

  const keygen = await scangateCli(['registry', 'keygen', '--out', keyFile]);
  assert.equal(keygen.code, 0, keygen.err);
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.equal(
    (await scangateCli(['registry', 'keygen', '--out', keyFile])).code,
    2,
    'an existing key is never overwritten',
  );
  const keyAdd = await scangateCli(['registry', 'key', 'add', '--private', keyFile, ...withToken]);
  assert.equal(keyAdd.code, 0, keyAdd.err);
  assert.match(keyAdd.out, /^ed25519 key [0-9a-f]{32}$/m);
  const list = await scangateCli(['registry', 'address', 'list', ...withToken]);
  assert.match(list.out, /^notices@bank\.example\t\d{4}-/m);

  // sign: the README vector from a file and from stdin; --mail agrees with the library.
  const body = join(dir, 'body.txt');
  writeFileSync(body, 'Hello world\n');
  const vector =
    'a8874d0d30efd5cf1bbc62d613c40256e8951760e488796f1c8b14d2c6a1f1ec0fb09e957e7dbeaa63f7c10a2e89e61013f8de6edcc83800497a9dbc2ee7dd7b';
  const fields = ['--from', 'Alice@Example.COM', '--to', 'bob@example.org', '--date', '20261123'];
  assert.equal((await scangateCli(['sign', ...fields, body])).out.trim(), vector);
  assert.equal((await scangateCli(['sign', ...fields], 'Hello world \r\n\r\n')).out.trim(), vector);
  const eml = join(dir, 'm.eml');
  writeFileSync(
    eml,
    'From: a@b.example\r\nTo: c@d.example\r\nDate: 1 Dec 2026 10:00 +0000\r\nSubject: s\r\n\r\nbody\r\n',
  );
  assert.equal(
    (await scangateCli(['sign', '--mail', eml])).out.trim(),
    queryOfMail(readFileSync(eml)).signature,
  );
  const badDate = await scangateCli(['sign', '--from', 'a@b.c', '--to', 'd@e.f', '--date', '20251399', body]);
  assert.equal(badDate.code, 2);
  assert.match(badDate.err, /date: 20251399 is not a calendar date/);

  const remove = await scangateCli(['registry', 'address', 'remove', 'notices@bank.example', ...withToken]);
  assert.equal(remove.code, 0, remove.err);
  assert.equal((await scangateCli(['registry', 'address', 'list', ...withToken])).out, '');
  const noToken = await scangateCli(['registry', 'address', 'list', '--registry', base], undefined);
  assert.equal(noToken.code, 2);
  assert.match(noToken.err, /no API token/);
});
