/**
 * BDAT from clients (RFC 3030 CHUNKING) through the relay: chunks spooled, the message judged at
 * `BDAT … LAST` and delivered by DATA (dot-stuffed) or BDAT, whatever the server offers; every
 * announced octet read whatever the answer, so the command stream stays in step; bare CR/LF, size,
 * order and syntax errors answered as RFC 3030 and RFC 5321 say.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { EICAR, mailWithAttachment } from '../helpers/eicar.js';
import { RawSmtpClient, startSmtpGateway, withoutScangateHeaders } from '../helpers/smtp-gateway.js';
import { type MailServer, startMailServer } from '../helpers/smtp-server.js';

let dir: string;
let engine: Scanner;
let server: MailServer;
let port: number;
const closers: (() => Promise<void>)[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-smtpbdat-'));
  engine = await createBuiltinScanner();
  server = await startMailServer({ tls: 'none' });
  closers.push(server.close);
  const g = await startSmtpGateway({
    dir,
    scanner: engine,
    listener: {
      upstream: `127.0.0.1:${server.port}`,
      tls: { client: 'none', upstream: 'none' },
      maxMessageSize: 200_000,
    },
  });
  closers.push(g.close);
  port = g.port;
});

after(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

async function session(): Promise<RawSmtpClient> {
  const c = await RawSmtpClient.connect(port);
  closers.push(async () => c.close());
  assert.equal((await c.reply())?.code, 220);
  const ehlo = await c.command('EHLO client.example.org');
  assert.equal(ehlo?.code, 250);
  assert.match(ehlo?.text ?? '', /^CHUNKING$/m);
  return c;
}

async function envelope(c: RawSmtpClient): Promise<void> {
  assert.equal((await c.command('MAIL FROM:<a@example.org>'))?.code, 250);
  assert.equal((await c.command('RCPT TO:<b@example.net>'))?.code, 250);
}

/** BDAT commands for `content` cut into `parts` chunks, as one pipelined write. */
function chunks(content: Buffer, parts: number): Buffer {
  const out: Buffer[] = [];
  const step = Math.ceil(content.length / parts);
  for (let i = 0; i < content.length; i += step) {
    const piece = content.subarray(i, i + step);
    const last = i + step >= content.length;
    out.push(Buffer.from(`BDAT ${piece.length}${last ? ' LAST' : ''}\r\n`), piece);
  }
  return Buffer.concat(out);
}

async function replies(c: RawSmtpClient, n: number) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await c.reply());
  return out;
}

describe('BDAT from clients', { concurrency: false }, () => {
  it('chunks are spooled, scanned at LAST and delivered byte-identical (by DATA, dot-stuffed)', async () => {
    const c = await session();
    await envelope(c);
    const content = Buffer.from(
      'Subject: chunked\r\n\r\n.a line starting with a dot\r\n..two dots\r\nQUIT\r\nend\r\n',
    );
    c.write(chunks(content, 4));
    const rs = await replies(c, 4);
    assert.deepEqual(
      rs.map((r) => r?.code),
      [250, 250, 250, 250],
    );
    assert.match(rs[0]?.text ?? '', /octets received/);
    const before = server.messages.length;
    assert.equal((await c.command('NOOP'))?.code, 250, 'still in step: "QUIT" inside a chunk was content');
    assert.equal(server.messages.length, before);
    const delivered = withoutScangateHeaders(server.messages.at(-1)!.data);
    assert.ok(delivered.rest.equals(content), delivered.rest.toString());
    assert.ok(delivered.headers.some((h) => h.startsWith('X-Scangate-Scanned: clean')));
  });

  it('an infected message sent in chunks is refused at LAST; nothing delivered', async () => {
    const c = await session();
    await envelope(c);
    const before = server.messages.length;
    c.write(chunks(mailWithAttachment(EICAR, 'eicar.com'), 3));
    const rs = await replies(c, 3);
    assert.deepEqual(
      rs.map((r) => r?.code),
      [250, 250, 554],
    );
    assert.match(rs[2]?.text ?? '', /Eicar-Signature/);
    assert.equal(server.messages.length, before);
  });

  it('BDAT without an envelope is refused after its octets are read, and the session goes on', async () => {
    const c = await session();
    const smuggled = 'RCPT TO:<x@example.net>\r\n';
    c.write(`BDAT ${smuggled.length} LAST\r\n${smuggled}`);
    const r = await c.reply();
    assert.equal(r?.code, 503);
    await envelope(c);
    c.write(chunks(Buffer.from('Subject: ok\r\n\r\nfine\r\n'), 1));
    assert.equal((await c.reply())?.code, 250);
  });

  it('bare LF or CR in chunked content: 554 5.6.0, nothing delivered', async () => {
    for (const bad of ['Subject: x\r\n\r\nbare\nLF\r\n', 'Subject: x\r\n\r\nbare\rCR\r\n']) {
      const c = await session();
      await envelope(c);
      const before = server.messages.length;
      c.write(chunks(Buffer.from(bad), 2));
      const rs = await replies(c, 2);
      assert.equal(rs[1]?.code, 554, JSON.stringify(bad));
      assert.match(rs[1]?.text ?? '', /^5\.6\.0/);
      assert.equal(server.messages.length, before);
    }
  });

  it('a CRLF split across two chunks is fine', async () => {
    const c = await session();
    await envelope(c);
    c.write('BDAT 21\r\nSubject: split\r\n\r\nab\rBDAT 3 LAST\r\n\ncd');
    const rs = await replies(c, 2);
    assert.deepEqual(
      rs.map((r) => r?.code),
      [250, 250],
    );
    assert.ok(
      withoutScangateHeaders(server.messages.at(-1)!.data).rest.toString().startsWith('Subject: split'),
    );
  });

  it('over maxMessageSize: 552 after the last chunk is read', async () => {
    const c = await session();
    await envelope(c);
    const big = Buffer.concat([
      Buffer.from('Subject: big\r\n\r\n'),
      Buffer.alloc(250_000, 'a'),
      Buffer.from('\r\n'),
    ]);
    c.write(chunks(big, 5));
    const rs = await replies(c, 5);
    assert.equal(rs[4]?.code, 552);
    assert.equal((await c.command('NOOP'))?.code, 250);
  });

  it('DATA between chunks is refused, RSET abandons the message, the next one goes through', async () => {
    const c = await session();
    await envelope(c);
    const before = server.messages.length;
    c.write('BDAT 5\r\nabcde');
    assert.equal((await c.reply())?.code, 250);
    assert.equal((await c.command('DATA'))?.code, 503);
    assert.equal((await c.command('RSET'))?.code, 250);
    await envelope(c);
    c.write(chunks(Buffer.from('Subject: after rset\r\n\r\nok\r\n'), 2));
    const rs = await replies(c, 2);
    assert.equal(rs[1]?.code, 250);
    assert.equal(server.messages.length, before + 1);
    assert.ok(
      withoutScangateHeaders(server.messages.at(-1)!.data).rest.toString().startsWith('Subject: after rset'),
    );
  });

  it('a malformed BDAT closes the connection (where its octets end is unknown)', async () => {
    const c = await session();
    await envelope(c);
    c.write('BDAT ten LAST\r\nMAIL FROM:<evil@example.org>\r\n');
    const r = await c.reply();
    assert.equal(r?.code, 501);
    assert.equal(await c.reply(), null, 'closed');
  });
});
