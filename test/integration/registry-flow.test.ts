/**
 * Issue 7 "done when" 1 and 2: the whole registry flow against real components, once over SQLite
 * and once over PostgreSQL. A real SMTP server receives the confirmation mail; the address is
 * confirmed through the mailed link and the page's form; an Ed25519 key is uploaded; `scangate
 * register` registers and stamps a .eml; `scangate verify` (the recipient) says authentic, then
 * tampered for one changed body character, then not-registered for an unregistered mail from the
 * enrolled address. Reminders, unbinding and the replayed link are checked on the way.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { RegistryClient } from '../../src/registry/client.js';
import { parseConfirmationNo } from '../../src/registry/confirmation.js';
import { queryOfMail } from '../../src/registry/mailcheck.js';
import {
  confirmationLink,
  confirmByLink,
  type Engine,
  mailText,
  registryForTest,
  scangateCli,
  waitForMail,
} from '../helpers/registry.js';

const SENDER = 'Notices@Bank.Example';

function mail(subject: string, body: string, from = `"Example Bank" <${SENDER}>`): string {
  return [
    'Received: from mx.bank.example by mail.customer.example; Mon, 23 Nov 2026 09:00:01 +0000',
    `From: ${from}`,
    'To: Customer <customer@Mail.Example>',
    'Date: Mon, 23 Nov 2026 08:59:58 +0100',
    `Subject: ${subject}`,
    'Message-ID: <1@bank.example>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    body,
  ].join('\r\n');
}

async function flow(t: TestContext, engine: Engine) {
  const reg = await registryForTest(t, engine);
  if (!reg) return;
  const { registry, mail: smtp, dataDir } = reg;
  const base = registry.url;
  // What `scangate verify` asks, without a process per mail (the CLI itself is run where it matters).
  const verdictOf = async (file: string) =>
    (await new RegistryClient(base).verify({ ...queryOfMail(readFileSync(file)) })).verdict;

  // An account, then an address: the confirmation mail arrives at the real SMTP server.
  const account = await new RegistryClient(base).createAccount('Example Bank');
  const api = new RegistryClient(base, account.token);
  const pending = await api.requestAddress(SENDER);
  await waitForMail(smtp, 1);
  const confirmation = smtp.messages[0];
  assert.ok(confirmation);
  assert.deepEqual(confirmation.to, ['Notices@bank.example']);
  const link = confirmationLink(confirmation.data);
  assert.equal(link.searchParams.get('ref'), pending.ref);
  assert.ok(!confirmation.data.toString().includes(account.token), 'the API token is never mailed');

  // Confirm by link (GET shows the form, the form POSTs with its CSRF token).
  const done = await confirmByLink(link);
  assert.equal(done.status, 200, done.html);
  assert.match(done.html, /Notices@bank\.example<\/p>|Notices@bank\.example is now registered/);
  // The same link again: a replay, 409, and the binding is unchanged.
  const replay = await confirmByLink(link);
  assert.equal(replay.status, 409);
  assert.match(replay.html, /already used/);
  await waitForMail(smtp, 2); // "your address is registered"
  assert.deepEqual(
    await api
      .request('GET', '/api/v1/addresses')
      .then((l) => (l as { address: string }[]).map((a) => a.address)),
    ['Notices@bank.example'],
  );

  // An Ed25519 key, uploaded as base64 SPKI.
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const uploaded = await api.addKey(publicKey.export({ format: 'der', type: 'spki' }).toString('base64'));
  assert.equal(uploaded.algorithm, 'ed25519');
  const keyFile = join(dataDir, 'bank.pem');
  writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  const tokenFile = join(dataDir, 'token');
  writeFileSync(tokenFile, account.token, { mode: 0o600 });

  // Register and stamp the .eml with the CLI.
  const eml = join(dataDir, 'statement.eml');
  writeFileSync(
    eml,
    mail('Your statement is ready', 'Dear customer,\r\n\r\nyour November statement is ready.\r\n'),
  );
  const registered = await scangateCli([
    'register',
    '--registry',
    base,
    '--token-file',
    tokenFile,
    '--key',
    keyFile,
    eml,
  ]);
  assert.equal(registered.code, 0, registered.err);
  const confirmationNo = registered.out.trim();
  const parts = parseConfirmationNo(confirmationNo);
  assert.ok(parts, confirmationNo);
  assert.equal(parts.address, 'Notices@bank.example');
  const now = new Date();
  assert.equal(parts.year, now.getUTCFullYear());
  const stamped = readFileSync(eml, 'utf8');
  assert.ok(
    stamped.startsWith(`X-Registered: Yes\r\nX-Confirmation-No: ${confirmationNo}\r\n`),
    stamped.slice(0, 200),
  );

  // The recipient verifies: authentic, even after its MTA turned CRLF into LF and added a header.
  const received = join(dataDir, 'received.eml');
  writeFileSync(received, `Delivered-To: customer@mail.example\n${stamped.replace(/\r\n/g, '\n')}`);
  const ok = await scangateCli(['verify', '--registry', base, received]);
  assert.equal(ok.code, 0, ok.out + ok.err);
  assert.match(ok.out, /: authentic \(/);

  // One body character changed: tampered.
  const tamperedFile = join(dataDir, 'tampered.eml');
  writeFileSync(tamperedFile, stamped.replace('November statement', 'November statemenT'));
  const tampered = await scangateCli(['verify', '--registry', base, '--json', tamperedFile]);
  assert.equal(tampered.code, 1, tampered.err);
  assert.equal(JSON.parse(tampered.out).verdict, 'tampered');

  // A mail from the enrolled address that was never registered (no X-Registered at all).
  const phishFile = join(dataDir, 'phish.eml');
  writeFileSync(
    phishFile,
    mail('Urgent: verify your account', 'Click http://bank.example.evil/login now.\r\n'),
  );
  const phish = await scangateCli(['verify', '--registry', base, '--json', phishFile]);
  assert.equal(phish.code, 1, phish.err);
  assert.equal(JSON.parse(phish.out).verdict, 'not-registered');
  // …and the same one with a forged X-Registered header and a made-up number.
  writeFileSync(
    phishFile,
    `X-Registered: Yes\r\nX-Confirmation-No: ${confirmationNo.slice(0, -8)}AAAAAAAA\r\n${readFileSync(phishFile, 'utf8')}`,
  );
  assert.equal(await verdictOf(phishFile), 'not-registered');

  // Registering the same message again gives back its number (409 from the API).
  const again = await api.registerMail(readFileSync(eml), privateKey);
  assert.deepEqual([again.confirmationNo, again.existing], [confirmationNo, true]);

  // Reminder: after the interval the address is mailed what is registered under it.
  const before = smtp.messages.length;
  reg.advance(31 * 86_400_000);
  assert.equal(await registry.service.sendDueReminders(), 1);
  await waitForMail(smtp, before + 1);
  const reminder = mailText(smtp.messages[before]?.data ?? Buffer.alloc(0));
  assert.match(reminder, /Example Bank/);
  assert.match(reminder, /messages registered since .*: 1/);
  assert.match(reminder, new RegExp(uploaded.id));
  assert.equal(await registry.service.sendDueReminders(), 0, 'not again before the next interval');
  assert.equal(await registry.service.purgeConfirmations(), 1, 'the spent confirmation, a month old, goes');

  // Unbind: the address is no longer enrolled; unregistered mail from it is now unknown-sender.
  await api.request('DELETE', `/api/v1/addresses/${encodeURIComponent(SENDER)}`);
  assert.equal(await verdictOf(eml), 'authentic', 'registered mail stays verifiable');
  writeFileSync(phishFile, mail('hello', 'plain\r\n'));
  assert.equal(await verdictOf(phishFile), 'unknown-sender');
}

test('registry flow on SQLite: enrol by mailed link, key, register + stamp, verify authentic/tampered/not-registered', (t) =>
  flow(t, 'sqlite'));

test('registry flow on PostgreSQL: the same', (t) => flow(t, 'postgres'));
