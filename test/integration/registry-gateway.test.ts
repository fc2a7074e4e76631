/**
 * Issue 7 "done when" 4: the registry in the SMTP gateway, through `scangate run`'s startGateway
 * with a `registry` block: swaks (the real client) sends through two SMTP listeners to a real
 * SMTP server. Outbound: mail from the organisation's enrolled address leaves stamped and the
 * recipient's `scangate verify` says authentic. Inbound: a forged mail from the enrolled address
 * arrives with X-Scangate-Phishing: fail and a tagged subject; the genuine one with pass; with
 * onFail reject, the forgery is refused with 550 5.7.1 and never delivered.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { MemoryEventSink } from '../../src/admin/events.js';
import { configSchema } from '../../src/config/schema.js';
import { startGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/logger.js';
import { peer } from '../helpers/peers.js';
import { enrolOrganisation, scangateCli } from '../helpers/registry.js';
import { swaks } from '../helpers/smtp-gateway.js';
import { startMailServer } from '../helpers/smtp-server.js';

const BANK = 'notices@bank.example';

async function gatewayWithRegistry(t: TestContext, onFail: 'tag' | 'reject') {
  const dir = mkdtempSync(join(tmpdir(), 'scangate-regwg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mail = await startMailServer({ tls: 'none' });
  t.after(() => mail.close());
  const registry = {
    listen: '127.0.0.1:0',
    database: 'sqlite:registry.db',
    mail: { smtp: `127.0.0.1:${mail.port}`, from: 'registry@scangate.test', tls: 'none' },
    gateway: {
      inbound: ['mx'],
      outbound: ['submission'],
      onFail,
      organisation: { tokenFile: join(dir, 'org.token'), keyFile: join(dir, 'org.pem') },
    },
  };
  await enrolOrganisation({ dataDir: dir, keyDir: dir, mail, address: BANK });
  const smtp = (name: string) => ({
    name,
    protocol: 'smtp',
    listen: '127.0.0.1:0',
    upstream: `127.0.0.1:${mail.port}`,
    tls: { client: 'none', upstream: 'none' },
  });
  const config = configSchema.parse({
    dataDir: dir,
    log: { level: 'silent' },
    listeners: [smtp('mx'), smtp('submission')],
    registry,
    admin: null,
  });
  const events = new MemoryEventSink();
  const gw = await startGateway(config, silentLogger, { events: [events] });
  t.after(() => gw.close(1000));
  const port = (name: string) => {
    const s = gw.services.find((x) => x.name === name);
    return (s?.address as { port: number }).port;
  };
  assert.ok(gw.mailRegistry);
  return { dir, mail, gw, events, url: gw.mailRegistry.url, mx: port('mx'), submission: port('submission') };
}

function send(bin: string, port: number, extra: string[]) {
  return swaks(bin, [
    '--server',
    '127.0.0.1',
    '--port',
    String(port),
    '--helo',
    'client.example',
    '--timeout',
    '30',
    ...extra,
  ]);
}

test('gateway: outbound mail from the enrolled sender leaves stamped and verifies authentic; inbound forgery gets X-Scangate-Phishing: fail and a tagged subject', async (t) => {
  const bin = peer(t, 'swaks');
  if (!bin) return;
  const { dir, mail, url, mx, submission } = await gatewayWithRegistry(t, 'tag');

  // Outbound: the bank's user submits; the gateway registers with the organisation key and stamps.
  const out = await send(bin, submission, [
    '--from',
    BANK,
    '--to',
    'customer@mail.example',
    '--header',
    'Subject: Your statement',
    '--body',
    'Your November statement is ready.',
  ]);
  assert.equal(out.code, 0, out.stdout);
  assert.equal(mail.messages.length, 1);
  const stamped = mail.messages[0]?.data.toString('utf8') ?? '';
  assert.match(stamped, /^X-Registered: Yes\r$/m);
  const number = /^X-Confirmation-No: (\S+)\r$/m.exec(stamped)?.[1];
  assert.ok(number?.includes(BANK), stamped.slice(0, 400));
  const received = join(dir, 'received.eml');
  writeFileSync(received, stamped);
  const verified = await scangateCli(['verify', '--registry', url, received]);
  assert.equal(verified.code, 0, verified.out + verified.err);
  assert.match(verified.out, /: authentic/);

  // Mail from someone else passes untouched (not the organisation's address: not registered).
  const other = await send(bin, submission, [
    '--from',
    'someone@elsewhere.example',
    '--to',
    'customer@mail.example',
    '--body',
    'hi',
  ]);
  assert.equal(other.code, 0, other.stdout);
  assert.doesNotMatch(mail.messages[1]?.data.toString('utf8') ?? '', /X-Registered|X-Scangate-Phishing/);

  // Inbound: a forgery from the enrolled address, with a copied X-Registered header.
  const forged = await send(bin, mx, [
    '--from',
    BANK,
    '--to',
    'customer@mail.example',
    '--header',
    'Subject: Verify your account',
    '--header',
    'X-Registered: Yes',
    '--body',
    'Log in at http://bank.example.evil/ now.',
  ]);
  assert.equal(forged.code, 0, forged.stdout);
  const flagged = mail.messages[2]?.data.toString('utf8') ?? '';
  assert.match(flagged, /^X-Scangate-Phishing: fail; verdict=not-registered\r$/m);
  assert.match(flagged, /^Subject: \[PHISHING\?\] Verify your account\r$/m);
  assert.match(flagged, /Log in at http:\/\/bank\.example\.evil\/ now\./, 'body forwarded unchanged');

  // Inbound: a stranger writing our verdict field itself gets ours on top, saying so.
  const fake = await send(bin, mx, [
    '--from',
    'help@bank-example.evil',
    '--to',
    'customer@mail.example',
    '--header',
    'X-Scangate-Phishing: pass; verdict=authentic',
    '--body',
    'Trust me.',
  ]);
  assert.equal(fake.code, 0, fake.stdout);
  const fakeData = mail.messages.pop()?.data.toString('utf8') ?? '';
  assert.match(
    fakeData,
    /^X-Scangate-Phishing: suspicious; verdict=foreign-verdict-field\r\n(?:.*\r\n)*X-Scangate-Phishing: pass/m,
  );
  assert.ok(fakeData.indexOf('suspicious; verdict=foreign') < fakeData.indexOf('pass; verdict=authentic'));

  // Inbound: the genuine stamped mail passes.
  const genuine = join(dir, 'genuine.eml');
  writeFileSync(genuine, stamped);
  const pass = await send(bin, mx, [
    '--from',
    BANK,
    '--to',
    'customer@mail.example',
    '--data',
    `@${genuine}`,
  ]);
  assert.equal(pass.code, 0, pass.stdout);
  const passed = mail.messages[3]?.data.toString('utf8') ?? '';
  assert.match(passed, /^X-Scangate-Phishing: pass; verdict=authentic\r$/m);
  assert.match(passed, /^Subject: Your statement\r$/m);

  // Inbound: the genuine mail with its body changed in transit is tampered.
  writeFileSync(genuine, stamped.replace('November', 'December'));
  assert.equal(
    (await send(bin, mx, ['--from', BANK, '--to', 'customer@mail.example', '--data', `@${genuine}`])).code,
    0,
  );
  assert.match(
    mail.messages[4]?.data.toString('utf8') ?? '',
    /^X-Scangate-Phishing: fail; verdict=tampered\r$/m,
  );
});

test('gateway: with onFail reject, a forged mail from an enrolled address is refused 550 5.7.1 and not delivered', async (t) => {
  const bin = peer(t, 'swaks');
  if (!bin) return;
  const { mail, mx, events } = await gatewayWithRegistry(t, 'reject');
  const r = await send(bin, mx, [
    '--from',
    BANK,
    '--to',
    'customer@mail.example',
    '--header',
    'Subject: Urgent',
    '--body',
    'Send us your PIN.',
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout, /<\*\* 550 5\.7\.1 Message refused: .*not-registered/);
  assert.equal(mail.messages.length, 0, 'nothing delivered');
  const flagged = events.events.filter((e) => e.signature?.startsWith('Registry.'));
  assert.equal(flagged.length, 1);
  assert.deepEqual(
    [flagged[0]?.signature, flagged[0]?.action, flagged[0]?.listener],
    ['Registry.NotRegistered', 'rejected', 'mx'],
  );
  // An ordinary sender the registry knows nothing about is not affected.
  const ok = await send(bin, mx, [
    '--from',
    'friend@example.org',
    '--to',
    'customer@mail.example',
    '--body',
    'lunch?',
  ]);
  assert.equal(ok.code, 0, ok.stdout);
  assert.equal(mail.messages.length, 1);
});
