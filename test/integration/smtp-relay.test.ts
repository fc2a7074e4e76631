/**
 * The SMTP relay's discipline with raw sockets and scripted servers (issue 4, "done when" 2, 3, 4, 7):
 * the server's own refusals reach the client unchanged, a server that vanishes after DATA never
 * yields a 250, a scanner outage is a 451 with nothing delivered (and the retry is delivered), bytes
 * pipelined after STARTTLS are discarded on both legs, malformed and oversized input gets the RFC's
 * replies, and an unreachable server is mirrored as a reset or a 421.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner, Verdict } from '../../src/engine/types.js';
import { EICAR, mailWithAttachment } from '../helpers/eicar.js';
import { selfSignedCert, TestCa, type TestCert, writePem } from '../helpers/pki.js';
import { RawSmtpClient, startSmtpGateway, withoutScangateHeaders } from '../helpers/smtp-gateway.js';
import {
  basicScript,
  type MailServer,
  startMailServer,
  startScriptedServer,
} from '../helpers/smtp-server.js';

let dir: string;
let engine: Scanner;
let ca: TestCa;
let caFile: string;
let cert: TestCert;
const closers: (() => Promise<void>)[] = [];

/** The builtin engine behind a switch: "down" answers as a backend that cannot be reached does. */
class SwitchableScanner implements Scanner {
  down = false;
  constructor(private readonly inner: Scanner) {}
  scan(...a: Parameters<Scanner['scan']>): Promise<Verdict> {
    if (this.down)
      return Promise.resolve({
        status: 'error',
        reason: 'connect ECONNREFUSED /run/clamav/clamd.ctl',
        code: 'ERR_CLAMD_UNAVAILABLE',
      });
    return this.inner.scan(...a);
  }
  version() {
    return this.inner.version();
  }
}

async function gateway(listener: Record<string, unknown>, scanner: Scanner = engine) {
  const g = await startSmtpGateway({ dir, scanner, upstreamCa: [caFile], listener });
  closers.push(g.close);
  return g;
}

async function plainServer(o: Partial<Parameters<typeof startMailServer>[0]> = {}): Promise<MailServer> {
  const s = await startMailServer({ tls: 'none', ...o });
  closers.push(s.close);
  return s;
}

/** EHLO, MAIL, RCPT, DATA with `content` (already CRLF, no final dot); returns the final reply. */
async function sendMail(
  c: RawSmtpClient,
  content: string,
  from = 'a@example.org',
): Promise<{ code: number; text: string } | null> {
  const mail = await c.command(`MAIL FROM:<${from}>`);
  assert.equal(mail?.code, 250, mail?.text);
  const rcpt = await c.command('RCPT TO:<b@example.net>');
  assert.equal(rcpt?.code, 250, rcpt?.text);
  const data = await c.command('DATA');
  assert.equal(data?.code, 354);
  c.write(`${content}.\r\n`);
  return c.reply();
}

async function greeted(port: number): Promise<RawSmtpClient> {
  const c = await RawSmtpClient.connect(port);
  const hello = await c.reply();
  assert.equal(hello?.code, 220);
  const ehlo = await c.command('EHLO client.example.org');
  assert.equal(ehlo?.code, 250);
  return c;
}

const SIMPLE = 'Subject: hi\r\n\r\nhello\r\n';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-smtpr-'));
  engine = await createBuiltinScanner();
  ca = await TestCa.create();
  caFile = writePem(dir, 'origin-ca.pem', ca.certPem);
  cert = await ca.issue({ commonName: 'mx.example.net', ipAddresses: ['127.0.0.1'] });
});

after(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  await engine.close?.();
  rmSync(dir, { recursive: true, force: true });
});

describe('the server keeps its word', { concurrency: false }, () => {
  it('550 on RCPT reaches the client unchanged', async () => {
    const s = await plainServer({ rejectRcpt: ['gone@example.net'] });
    const g = await gateway({ upstream: `127.0.0.1:${s.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await greeted(g.port);
    await c.command('MAIL FROM:<a@example.org>');
    const r = await c.command('RCPT TO:<gone@example.net>');
    assert.equal(r?.code, 550);
    assert.equal(r?.text, '5.1.1 <gone@example.net>: Recipient address rejected');
    c.close();
  });

  it('452 on DATA reaches the client unchanged, and nothing is delivered', async () => {
    const seen: string[][] = [];
    const srv = await startScriptedServer(async (conn) => {
      seen.push(conn.seen);
      await basicScript(conn, { onData: () => '452 4.3.1 Insufficient system storage\r\n' });
    });
    closers.push(srv.close);
    const g = await gateway({ upstream: `127.0.0.1:${srv.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await greeted(g.port);
    const r = await sendMail(c, SIMPLE);
    assert.equal(r?.code, 452);
    assert.equal(r?.text, '4.3.1 Insufficient system storage');
    assert.equal((await c.command('NOOP'))?.code, 250, 'the session goes on');
    c.close();
  });

  it('421 mid-session is passed on and both connections close', async () => {
    const srv = await startScriptedServer(async (conn) => {
      conn.send('220 scripted\r\n');
      await conn.line();
      conn.send('250 scripted\r\n');
      await conn.line();
      conn.send('421 4.3.2 System shutting down\r\n');
      conn.socket.end();
    });
    closers.push(srv.close);
    const g = await gateway({ upstream: `127.0.0.1:${srv.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await greeted(g.port);
    const r = await c.command('MAIL FROM:<a@example.org>');
    assert.deepEqual(r, { code: 421, text: '4.3.2 System shutting down' });
    assert.equal(await c.reply(), null, 'closed after the 421');
  });

  it('a server that closes after the data never gets a 250 reported to the client', async () => {
    let received = '';
    const srv = await startScriptedServer((conn) =>
      basicScript(conn, {
        afterData: (content) => {
          received = content;
          return null; // hang up instead of answering
        },
      }),
    );
    closers.push(srv.close);
    const g = await gateway({ upstream: `127.0.0.1:${srv.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await greeted(g.port);
    const r = await sendMail(c, SIMPLE);
    assert.ok(received.includes('hello'), 'the server did get the data');
    assert.equal(r?.code, 421);
    assert.match(r!.text, /^4\.4\.2 /);
    assert.equal(await c.reply(), null);
  });

  it('many messages per connection with RSET between; an infected one in the middle changes nothing else', async () => {
    const s = await plainServer();
    const g = await gateway({ upstream: `127.0.0.1:${s.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await greeted(g.port);
    assert.equal((await sendMail(c, 'Subject: 1\r\n\r\none\r\n'))?.code, 250);
    assert.equal((await c.command('RSET'))?.code, 250);
    const infected = await sendMail(c, mailWithAttachment(EICAR, 'x.com').toString('latin1'));
    assert.equal(infected?.code, 554);
    assert.match(infected!.text, /^5\.7\.1 .*Eicar-Signature/);
    assert.equal((await sendMail(c, 'Subject: 3\r\n\r\nthree\r\n'))?.code, 250);
    assert.equal((await c.command('QUIT'))?.code, 221);
    assert.deepEqual(
      s.messages.map((m) => withoutScangateHeaders(m.data).rest.toString()),
      ['Subject: 1\r\n\r\none\r\n', 'Subject: 3\r\n\r\nthree\r\n'],
    );
  });
});

describe('scanner outage', { concurrency: false }, () => {
  it('scanner down: 451 4.7.1 and nothing delivered; the retry after it is back is delivered once', async () => {
    const s = await plainServer();
    const scanner = new SwitchableScanner(engine);
    const g = await gateway(
      { upstream: `127.0.0.1:${s.port}`, tls: { client: 'none', upstream: 'none' } },
      scanner,
    );
    scanner.down = true;
    const c1 = await greeted(g.port);
    const r1 = await sendMail(c1, SIMPLE);
    assert.equal(r1?.code, 451);
    assert.match(r1!.text, /^4\.7\.1 /);
    assert.equal(s.messages.length, 0, 'nothing delivered');
    assert.equal((await c1.command('QUIT'))?.code, 221);
    const ev = g.events.events.filter((e) => e.kind === 'verdict');
    assert.deepEqual(
      ev.map((e) => e.action),
      ['blocked'],
    );
    scanner.down = false;
    const c2 = await greeted(g.port);
    assert.equal((await sendMail(c2, SIMPLE))?.code, 250);
    c2.close();
    assert.equal(s.messages.length, 1);
  });
});

describe('STARTTLS injection (CVE-2011-0411 class)', { concurrency: false }, () => {
  it('client leg: a command pipelined after STARTTLS in plaintext is not executed', async () => {
    const s = await startMailServer({ tls: 'implicit', cert });
    closers.push(s.close);
    const g = await gateway({
      upstream: `127.0.0.1:${s.port}`,
      tls: { client: 'starttls', upstream: 'implicit' },
    });
    const c = await greeted(g.port);
    c.write('STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n');
    const ready = await c.reply();
    assert.equal(ready?.code, 220);
    await c.startTls(readFileSync(g.caFile, 'utf8'));
    // Had the injected MAIL been run, its 250 would be waiting here instead of EHLO's reply.
    const ehlo = await c.command('EHLO client.example.org');
    assert.equal(ehlo?.code, 250);
    assert.match(ehlo!.text, /AUTH|SIZE/);
    assert.doesNotMatch(ehlo!.text, /STARTTLS/, 'not offered twice');
    assert.equal((await sendMail(c, SIMPLE, 'real@example.org'))?.code, 250);
    assert.deepEqual(s.mailFrom, ['real@example.org'], 'the server never saw the injected MAIL');
    c.close();
  });

  it('commands sent before EHLO again after STARTTLS are refused (RFC 3207 §4.2)', async () => {
    const s = await startMailServer({ tls: 'implicit', cert });
    closers.push(s.close);
    const g = await gateway({
      upstream: `127.0.0.1:${s.port}`,
      tls: { client: 'starttls', upstream: 'implicit' },
    });
    const c = await greeted(g.port);
    assert.equal((await c.command('STARTTLS'))?.code, 220);
    await c.startTls(readFileSync(g.caFile, 'utf8'));
    assert.equal((await c.command('MAIL FROM:<a@example.org>'))?.code, 503);
    c.close();
  });

  it('server leg: a reply injected after the server’s STARTTLS 220 is discarded', async () => {
    const mailFrom: string[] = [];
    const srv = await startScriptedServer(async (conn) => {
      conn.send('220 scripted\r\n');
      assert.match((await conn.line()) ?? '', /^EHLO /);
      conn.send('250-scripted\r\n250 STARTTLS\r\n');
      assert.equal(await conn.line(), 'STARTTLS');
      // The attacker's extra plaintext reply rides in the same segment as the 220.
      conn.send('220 2.0.0 go ahead\r\n250 injected-reply\r\n');
      await conn.startTls(cert);
      for (;;) {
        const l = await conn.line();
        if (l === null) return;
        const verb = l.split(' ')[0]!.toUpperCase();
        if (verb === 'EHLO') conn.send('250-scripted-over-tls\r\n250 PIPELINING\r\n');
        else if (verb === 'MAIL') {
          mailFrom.push(l);
          conn.send('250 2.1.0 sender ok\r\n');
        } else if (verb === 'QUIT') {
          conn.send('221 bye\r\n');
          return;
        } else conn.send('250 ok\r\n');
      }
    });
    closers.push(srv.close);
    const g = await gateway({
      upstream: `127.0.0.1:${srv.port}`,
      tls: { client: 'none', upstream: 'starttls' },
    });
    const c = await RawSmtpClient.connect(g.port);
    assert.equal((await c.reply())?.code, 220);
    const ehlo = await c.command('EHLO client.example.org');
    assert.equal(ehlo?.code, 250);
    assert.match(ehlo!.text, /^scripted-over-tls/, 'the EHLO reply is the real one, from inside TLS');
    const mail = await c.command('MAIL FROM:<a@example.org>');
    assert.deepEqual(mail, { code: 250, text: '2.1.0 sender ok' });
    assert.equal(mailFrom.length, 1);
    c.close();
  });
});

describe('hostile and broken input', { concurrency: false }, () => {
  it('bare LF, malformed commands and a 10 MB line get 500 5.5.2; the session survives', async () => {
    const s = await plainServer();
    const g = await gateway({ upstream: `127.0.0.1:${s.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await greeted(g.port);
    c.write('NOOP\n');
    const bare = await c.reply();
    assert.equal(bare?.code, 500);
    assert.match(bare!.text, /^5\.5\.2 .*bare <LF>/);
    assert.equal((await c.command('\u0001\u0002'))?.code, 500);
    const line = Buffer.alloc(10 * 1024 * 1024, 0x41);
    c.write('MAIL FROM:<');
    c.write(line);
    c.write('>\r\n');
    const long = await c.reply(30_000);
    assert.deepEqual(long, { code: 500, text: '5.5.2 Line too long' });
    assert.equal((await c.command('NOOP'))?.code, 250, 'still serving');
    assert.equal(s.mailFrom.length, 0, 'the long command never reached the server');
    c.close();
  });

  it('XCLIENT is refused and not forwarded; BDAT and DATA without recipients are refused', async () => {
    const s = await plainServer();
    const g = await gateway({ upstream: `127.0.0.1:${s.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await greeted(g.port);
    assert.equal((await c.command('XCLIENT ADDR=10.0.0.1'))?.code, 502);
    // BDAT's octets are read before the refusal (RFC 3030), so the stream stays in step.
    c.write('BDAT 10 LAST\r\n0123456789');
    assert.equal((await c.reply())?.code, 503);
    const data = await c.command('DATA');
    assert.equal(data?.code, 503, data?.text);
    c.close();
  });

  it('AUTH on a plaintext STARTTLS-configured leg is refused with 538 before reaching the server', async () => {
    const s = await startMailServer({ tls: 'starttls', cert, auth: { user: 'u', pass: 'p' } });
    closers.push(s.close);
    const g = await gateway({
      upstream: `127.0.0.1:${s.port}`,
      tls: { client: 'starttls', upstream: 'starttls' },
    });
    const c = await greeted(g.port);
    const r = await c.command('AUTH PLAIN AHUAcA==');
    assert.equal(r?.code, 538);
    c.close();
  });

  it('a message over maxMessageSize gets 552 and the connection goes on', async () => {
    const s = await plainServer();
    const g = await gateway({
      upstream: `127.0.0.1:${s.port}`,
      tls: { client: 'none', upstream: 'none' },
      maxMessageSize: 1000,
    });
    const c = await greeted(g.port);
    assert.equal((await c.command('MAIL FROM:<a@example.org> SIZE=5000'))?.code, 552);
    const r = await sendMail(c, `Subject: big\r\n\r\n${'x'.repeat(2000)}\r\n`);
    assert.equal(r?.code, 552);
    assert.equal((await sendMail(c, SIMPLE))?.code, 250);
    assert.equal(s.messages.length, 1);
    c.close();
  });

  it('a 3 MB message with dot lines, spooled to disk and sent past the 1 MiB write queue, arrives byte-identical', async () => {
    const s = await plainServer();
    const g = await gateway({
      upstream: `127.0.0.1:${s.port}`,
      tls: { client: 'none', upstream: 'none' },
      spoolMemory: 64 * 1024,
    });
    const c = await greeted(g.port);
    const lines = Array.from({ length: 40_000 }, (_, i) =>
      i % 7 === 0 ? `.line ${i} ${'x'.repeat(60)}` : `line ${i} ${'y'.repeat(64)}`,
    );
    const content = `Subject: big\r\n\r\n${lines.join('\r\n')}\r\n`;
    const r = await sendMail(c, content.replace(/^\./gm, '..'));
    assert.equal(r?.code, 250, r?.text);
    assert.equal(s.messages.length, 1);
    const delivered = withoutScangateHeaders(s.messages[0]!.data).rest.toString('latin1');
    assert.equal(delivered.length, content.length);
    assert.ok(delivered === content, 'content byte-identical');
    c.close();
  });

  it('a silent client gets 421 after idleTimeout', async () => {
    const s = await plainServer();
    const g = await gateway({
      upstream: `127.0.0.1:${s.port}`,
      tls: { client: 'none', upstream: 'none' },
      idleTimeout: '300ms',
    });
    const c = await greeted(g.port);
    const r = await c.reply(5_000);
    assert.equal(r?.code, 421);
    assert.match(r!.text, /timeout/);
  });
});

describe('upstream first', { concurrency: false }, () => {
  async function closedPort(): Promise<number> {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as import('node:net').AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    return port;
  }

  /** What a raw client sees: the first bytes, or how the connection ended. */
  function firstContact(port: number): Promise<string> {
    return new Promise((resolve) => {
      const s = connect({ port, host: '127.0.0.1' });
      s.once('data', (d) => {
        s.destroy();
        resolve(d.toString('latin1'));
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      s.once('close', () => resolve('closed'));
    });
  }

  it('server down: the client connection is reset, no 220', async () => {
    const g = await gateway({
      upstream: `127.0.0.1:${await closedPort()}`,
      tls: { client: 'none', upstream: 'none' },
    });
    assert.equal(await firstContact(g.port), 'ECONNRESET');
    assert.equal(g.events.events.at(-1)?.kind, 'upstream-failure');
  });

  it('server down with unreachable: 421 — a 421 greeting', async () => {
    const g = await gateway({
      upstream: `127.0.0.1:${await closedPort()}`,
      tls: { client: 'none', upstream: 'none' },
      unreachable: '421',
    });
    assert.match(await firstContact(g.port), /^421 4\.4\.1 /);
  });

  it('an upstream with an untrusted certificate is treated as unreachable', async () => {
    const bad = await selfSignedCert({ commonName: 'evil', ipAddresses: ['127.0.0.1'] });
    const s = await startMailServer({ tls: 'implicit', cert: bad });
    closers.push(s.close);
    const g = await gateway({
      upstream: `127.0.0.1:${s.port}`,
      tls: { client: 'none', upstream: 'implicit' },
    });
    assert.equal(await firstContact(g.port), 'ECONNRESET');
    assert.match(g.events.events.at(-1)?.reason ?? '', /not trusted|self-signed/);
  });

  it('the greeting is the server’s own 220, sent only after the server spoke', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const srv = await startScriptedServer(async (conn) => {
      await gate;
      await basicScript(conn);
    });
    closers.push(srv.close);
    const g = await gateway({ upstream: `127.0.0.1:${srv.port}`, tls: { client: 'none', upstream: 'none' } });
    const c = await RawSmtpClient.connect(g.port);
    await assert.rejects(c.reply(300), /no reply/);
    release();
    assert.deepEqual(await c.reply(), { code: 220, text: 'scripted ESMTP' });
    c.close();
  });
});
