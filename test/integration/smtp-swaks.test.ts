/**
 * The SMTP gateway driven by swaks (Debian) against a real SMTP server (smtp-server) — issue 4,
 * "done when" 1: STARTTLS on the client leg and implicit TLS upstream with a 1 MB attachment arriving
 * byte-identical (apart from the X-Scangate-* header lines), EICAR rejected with 554 and nothing
 * delivered, EICAR stripped with every other part unchanged; implicit TLS on the client leg, plain
 * both legs, AUTH PLAIN passed through, PIPELINING.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { EICAR } from '../helpers/eicar.js';
import { peer } from '../helpers/peers.js';
import { TestCa, type TestCert, writePem } from '../helpers/pki.js';
import { startSmtpGateway, swaks, withoutScangateHeaders } from '../helpers/smtp-gateway.js';
import { type MailServer, startMailServer } from '../helpers/smtp-server.js';

let dir: string;
let scanner: Scanner;
let ca: TestCa;
let caFile: string;
let cert: TestCert;
let direct: MailServer;
const closers: (() => Promise<void>)[] = [];

function b64(data: Buffer): string {
  return data.toString('base64').replace(/.{1,76}/g, '$&\r\n');
}

/** A multipart message: a text part, an attachment, and a small clean second attachment. */
function buildMessage(attachment: Buffer, name: string): Buffer {
  return Buffer.from(
    [
      'From: Sender <sender@example.org>',
      'To: Rcpt <rcpt@example.net>',
      'Subject: scangate swaks test',
      'Message-ID: <t1@example.org>',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b1"',
      '',
      'This is a multi-part message in MIME format.',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Hello,',
      '.a line that starts with a dot',
      'see the attachments.',
      '--b1',
      `Content-Type: application/octet-stream; name="${name}"`,
      'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; filename="${name}"`,
      '',
      `${b64(attachment)}--b1`,
      'Content-Type: text/csv; name="clean.csv"',
      'Content-Disposition: attachment; filename="clean.csv"',
      '',
      'a,b,c',
      '1,2,3',
      '--b1--',
      '',
    ].join('\r\n'),
    'latin1',
  );
}

async function gateway(listener: Record<string, unknown>, upstreamPort: number) {
  const g = await startSmtpGateway({
    dir,
    scanner,
    upstreamCa: [caFile],
    listener: { upstream: `127.0.0.1:${upstreamPort}`, ...listener },
  });
  closers.push(g.close);
  return g;
}

async function server(o: Parameters<typeof startMailServer>[0]): Promise<MailServer> {
  const s = await startMailServer(o);
  closers.push(s.close);
  return s;
}

function swaksArgs(port: number, dataFile: string, extra: string[] = []): string[] {
  return [
    '--server',
    '127.0.0.1',
    '--port',
    String(port),
    '--from',
    'sender@example.org',
    '--to',
    'rcpt@example.net',
    '--helo',
    'client.example.org',
    '--data',
    `@${dataFile}`,
    '--timeout',
    '30',
    ...extra,
  ];
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-smtp-'));
  scanner = await createBuiltinScanner();
  ca = await TestCa.create();
  caFile = writePem(dir, 'origin-ca.pem', ca.certPem);
  cert = await ca.issue({
    commonName: 'mx.example.net',
    dnsNames: ['mx.example.net'],
    ipAddresses: ['127.0.0.1'],
  });
  direct = await server({ tls: 'none' });
});

/**
 * What the server receives when swaks sends `file` to it directly (swaks adds its own line ending
 * fix-ups): the reference the relayed copy must equal byte for byte.
 */
async function directly(bin: string, file: string): Promise<Buffer> {
  const before = direct.messages.length;
  const r = await swaks(bin, swaksArgs(direct.port, file));
  assert.equal(r.code, 0, r.stdout);
  assert.equal(direct.messages.length, before + 1);
  return direct.messages.at(-1)!.data;
}

after(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  await scanner.close?.();
  rmSync(dir, { recursive: true, force: true });
});

describe('smtp gateway with swaks', { concurrency: false }, () => {
  it('STARTTLS client leg, implicit TLS upstream: a 1 MB attachment arrives byte-identical', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'implicit', cert });
    const g = await gateway({ tls: { client: 'starttls', upstream: 'implicit' } }, s.port);
    const message = buildMessage(randomBytes(1024 * 1024), 'report.bin');
    const file = join(dir, 'clean.eml');
    writeFileSync(file, message);
    const r = await swaks(bin, swaksArgs(g.port, file, ['--tls', '--tls-verify', '--tls-ca-path', g.caFile]));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /<~ {2}250 /, 'the final 250 came through TLS');
    assert.equal(s.messages.length, 1);
    const got = s.messages[0]!;
    assert.equal(got.secure, true, 'upstream leg encrypted');
    const { headers, rest } = withoutScangateHeaders(got.data);
    assert.ok(
      headers.some((h) => /^X-Scangate-Scanned: clean/.test(h)),
      headers.join('\n'),
    );
    assert.ok(
      rest.equals(await directly(bin, file)),
      'everything but the X-Scangate headers is byte-identical',
    );
    assert.equal(g.events.events.length, 0, 'no event for a clean message');
  });

  it('policy reject: EICAR attached gets 554 5.7.1 naming the threat, nothing reaches the server', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'implicit', cert });
    const g = await gateway(
      { tls: { client: 'starttls', upstream: 'implicit' }, onInfected: 'reject' },
      s.port,
    );
    const file = join(dir, 'eicar.eml');
    writeFileSync(file, buildMessage(EICAR, 'eicar.com'));
    const r = await swaks(bin, swaksArgs(g.port, file, ['--tls', '--tls-verify', '--tls-ca-path', g.caFile]));
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /<~\* 554 5\.7\.1 .*Eicar-Signature.*eicar\.com/);
    assert.equal(s.messages.length, 0, 'nothing delivered');
    const ev = g.events.events.filter((e) => e.kind === 'verdict');
    assert.equal(ev.length, 1);
    assert.equal(ev[0]!.action, 'rejected');
    assert.equal(ev[0]!.signature, 'Eicar-Signature');
    assert.equal(ev[0]!.protocol, 'smtp');
  });

  it('policy strip: the infected attachment is replaced by a notice, every other part byte-identical', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'implicit', cert });
    const g = await gateway(
      { tls: { client: 'starttls', upstream: 'implicit' }, onInfected: 'strip' },
      s.port,
    );
    const message = buildMessage(EICAR, 'eicar.com');
    const file = join(dir, 'strip.eml');
    writeFileSync(file, message);
    const r = await swaks(bin, swaksArgs(g.port, file, ['--tls', '--tls-verify', '--tls-ca-path', g.caFile]));
    assert.equal(r.code, 0, r.stdout);
    assert.equal(s.messages.length, 1);
    const { headers, rest } = withoutScangateHeaders(s.messages[0]!.data);
    const reference = (await directly(bin, file)).toString('latin1');
    assert.ok(headers.includes('X-Scangate-Removed: eicar.com (Eicar-Signature)'), headers.join('\n'));
    const text = rest.toString('latin1');
    assert.ok(!text.includes(b64(EICAR).trim()), 'the EICAR part is gone');
    assert.match(text, /scangate removed this part of the message: eicar\.com/);
    // Everything before the infected part's headers and after its body is unchanged.
    const original = reference;
    const cut = original.indexOf('Content-Type: application/octet-stream');
    const resume = original.indexOf('--b1\r\nContent-Type: text/csv');
    assert.equal(text.slice(0, cut), original.slice(0, cut));
    assert.ok(text.endsWith(original.slice(resume)), 'the clean attachment after it is byte-identical');
    const ev = g.events.events.filter((e) => e.kind === 'verdict');
    assert.deepEqual(
      ev.map((e) => [e.action, e.signature]),
      [['stripped', 'Eicar-Signature']],
    );
  });

  it('policy tag: delivered with an X-Scangate-Infected header', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'none' });
    const g = await gateway({ tls: { client: 'none', upstream: 'none' }, onInfected: 'tag' }, s.port);
    const message = buildMessage(EICAR, 'eicar.com');
    const file = join(dir, 'tag.eml');
    writeFileSync(file, message);
    const r = await swaks(bin, swaksArgs(g.port, file));
    assert.equal(r.code, 0, r.stdout);
    const { headers, rest } = withoutScangateHeaders(s.messages[0]!.data);
    assert.ok(
      headers.some((h) => h.startsWith('X-Scangate-Infected: Eicar-Signature')),
      headers.join('\n'),
    );
    assert.ok(rest.equals(await directly(bin, file)));
  });

  it('implicit TLS on the client leg (swaks --tlsc), STARTTLS upstream', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'starttls', cert });
    const g = await gateway({ tls: { client: 'implicit', upstream: 'starttls' } }, s.port);
    const message = buildMessage(randomBytes(10_000), 'small.bin');
    const file = join(dir, 'tlsc.eml');
    writeFileSync(file, message);
    const r = await swaks(
      bin,
      swaksArgs(g.port, file, ['--tlsc', '--tls-verify', '--tls-ca-path', g.caFile]),
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(s.messages.length, 1);
    assert.equal(s.messages[0]!.secure, true, 'the relay did STARTTLS with the server');
    assert.ok(withoutScangateHeaders(s.messages[0]!.data).rest.equals(await directly(bin, file)));
  });

  it('plain on both legs, AUTH PLAIN passed through, a wrong password refused by the server', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'none', auth: { user: 'alice', pass: 's3cret' } });
    const g = await gateway({ tls: { client: 'none', upstream: 'none' } }, s.port);
    const file = join(dir, 'auth.eml');
    writeFileSync(file, buildMessage(randomBytes(1000), 'a.bin'));
    const ok = await swaks(
      bin,
      swaksArgs(g.port, file, ['--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 's3cret']),
    );
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /AUTH PLAIN/);
    assert.equal(s.messages.length, 1);
    assert.equal(s.messages[0]!.user, 'alice', 'the server authenticated the client itself');
    const bad = await swaks(
      bin,
      swaksArgs(g.port, file, ['--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'wrong']),
    );
    assert.notEqual(bad.code, 0);
    assert.match(
      bad.stdout,
      /<\*\* 535 Invalid username or password/,
      "the server's own refusal reaches the client",
    );
    assert.equal(s.messages.length, 1);
  });

  it('AUTH is not offered on a STARTTLS client leg before TLS, and refused with 538 if tried', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'starttls', cert, auth: { user: 'alice', pass: 's3cret' } });
    const g = await gateway({ tls: { client: 'starttls', upstream: 'starttls' } }, s.port);
    const file = join(dir, 'auth2.eml');
    writeFileSync(file, buildMessage(randomBytes(1000), 'a.bin'));
    const plain = await swaks(bin, swaksArgs(g.port, file, ['--quit-after', 'EHLO']));
    assert.match(plain.stdout, /250-STARTTLS|250 STARTTLS/);
    assert.doesNotMatch(plain.stdout, /AUTH/);
    const forced = await swaks(
      bin,
      swaksArgs(g.port, file, [
        '--auth',
        'PLAIN',
        '--auth-user',
        'alice',
        '--auth-password',
        's3cret',
        '--auth-optional-strict',
      ]),
    );
    assert.doesNotMatch(forced.stdout, /<~ {2}235/);
    const tls = await swaks(
      bin,
      swaksArgs(g.port, file, [
        '--tls',
        '--tls-verify',
        '--tls-ca-path',
        g.caFile,
        '--auth',
        'PLAIN',
        '--auth-user',
        'alice',
        '--auth-password',
        's3cret',
      ]),
    );
    assert.equal(tls.code, 0, tls.stdout);
    assert.match(tls.stdout, /<~ {2}235 /);
    assert.equal(s.messages.at(-1)!.user, 'alice');
  });

  it('PIPELINING: pipelined MAIL/RCPT/DATA are answered in order', async (t) => {
    const bin = peer(t, 'swaks');
    if (!bin) return;
    const s = await server({ tls: 'none', rejectRcpt: ['nobody@example.net'] });
    const g = await gateway({ tls: { client: 'none', upstream: 'none' } }, s.port);
    const message = buildMessage(randomBytes(2000), 'p.bin');
    const file = join(dir, 'pipe.eml');
    writeFileSync(file, message);
    const r = await swaks(
      bin,
      swaksArgs(g.port, file, ['--pipeline', '--to', 'rcpt@example.net,nobody@example.net']),
    );
    assert.match(r.stdout, /PIPELINING/);
    assert.match(
      r.stdout,
      /<\*\* 550 .*nobody@example\.net/,
      "the server's 550 for the second RCPT, in order",
    );
    assert.equal(s.messages.length, 1);
    assert.deepEqual(s.messages[0]!.to, ['rcpt@example.net']);
    assert.ok(withoutScangateHeaders(s.messages[0]!.data).rest.equals(await directly(bin, file)));
  });
});
