/**
 * RFC 2920 through the relay: commands a client pipelines (MAIL, RCPT, RSET) reach a server that
 * offered PIPELINING as one group, and a server that did not offer it one command at a time; the
 * client's replies come back in order, each the server's own, with the relay's own answers (a SIZE
 * over the limit) in their place in the sequence.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { ObjectSource } from '../../src/engine/source.js';
import type { Scanner } from '../../src/engine/types.js';
import { SmtpChannel } from '../../src/protocols/smtp/channel.js';
import { ServerLeg, UpstreamLost } from '../../src/protocols/smtp/server-leg.js';
import { RawSmtpClient, startSmtpGateway } from '../helpers/smtp-gateway.js';

let dir: string;
let engine: Scanner;
const closers: (() => Promise<void>)[] = [];

interface Recorder {
  port: number;
  /** Each TCP read the server got after EHLO, as text. */
  reads: string[];
  /** Commands that arrived while the server still owed a reply to an earlier one. */
  early: string[];
  messages: string[];
  /** Every command line, in order. */
  commands: string[];
}

/**
 * A server that records how commands arrive. Replies to MAIL/RCPT/RSET are delayed a little, so a
 * relay that sent the next command without waiting (to a server without PIPELINING) is caught.
 */
async function recordingServer(
  pipelining: boolean,
  o: { chunking?: boolean; refuseChunk?: () => string | null } = {},
): Promise<Recorder> {
  const rec: Recorder = { port: 0, reads: [], early: [], messages: [], commands: [] };
  const server: Server = createServer((s: Socket) => {
    let buf = '';
    let busy = false;
    let inData = false;
    /** Octets of a BDAT chunk still to read. */
    let chunk = -1;
    let hasMail = false;
    let rcpts = 0;
    s.write('220 recorder ESMTP\r\n');
    const handle = async () => {
      if (busy) return;
      busy = true;
      for (;;) {
        if (chunk >= 0) {
          if (Buffer.byteLength(buf, 'latin1') < chunk) break;
          const content = buf.slice(0, chunk);
          buf = buf.slice(chunk);
          chunk = -1;
          const refusal = o.refuseChunk?.() ?? null;
          if (refusal) s.write(refusal);
          else {
            rec.messages.push(content);
            s.write('250 2.0.0 queued (chunked)\r\n');
          }
          hasMail = false;
          continue;
        }
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) break;
          rec.messages.push(buf.slice(0, end + 2));
          buf = buf.slice(end + 5);
          inData = false;
          s.write('250 2.0.0 queued\r\n');
          continue;
        }
        const i = buf.indexOf('\r\n');
        if (i < 0) break;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const verb = line.split(' ')[0]!.toUpperCase();
        rec.commands.push(line);
        let r: string;
        if (verb === 'EHLO')
          r = `250-recorder\r\n${pipelining ? '250-PIPELINING\r\n' : ''}${o.chunking ? '250-CHUNKING\r\n' : ''}250 SIZE 1000000\r\n`;
        else if (verb === 'BDAT' && o.chunking) {
          const m = /^BDAT (\d+) LAST$/i.exec(line);
          assert.ok(m, `one LAST chunk expected, got ${line}`);
          chunk = Number(m[1]);
          continue;
        } else if (verb === 'MAIL') {
          hasMail = true;
          rcpts = 0;
          r = '250 2.1.0 Ok';
        } else if (verb === 'RCPT') {
          if (!hasMail) r = '503 5.5.1 Error: need MAIL command';
          else if (line.includes('nobody@')) r = '550 5.1.1 <nobody@example.net>: Recipient address rejected';
          else {
            rcpts++;
            r = '250 2.1.5 Ok';
          }
        } else if (verb === 'RSET') {
          hasMail = false;
          r = '250 2.0.0 Ok';
        } else if (verb === 'DATA') {
          if (rcpts === 0) r = '554 5.5.1 Error: no valid recipients';
          else {
            inData = true;
            r = '354 End data with <CR><LF>.<CR><LF>';
          }
        } else if (verb === 'QUIT') {
          s.end('221 2.0.0 Bye\r\n');
          return;
        } else r = '250 Ok';
        if (!r.endsWith('\r\n')) r += '\r\n';
        if (verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET') {
          await new Promise((res) => setTimeout(res, 30));
          // Anything already here, or arrived during the pause, was sent before this reply.
          if (!pipelining && buf.length > 0) rec.early.push(buf);
        }
        s.write(r);
      }
      busy = false;
    };
    s.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      if (!text.startsWith('EHLO')) rec.reads.push(text);
      buf += text;
      void handle();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  rec.port = (server.address() as AddressInfo).port;
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  closers.push(async () => {
    for (const s of sockets) s.destroy();
  });
  return rec;
}

async function through(rec: Recorder): Promise<RawSmtpClient> {
  const g = await startSmtpGateway({
    dir,
    scanner: engine,
    listener: {
      upstream: `127.0.0.1:${rec.port}`,
      tls: { client: 'none', upstream: 'none' },
      maxMessageSize: 500_000,
    },
  });
  closers.push(g.close);
  const c = await RawSmtpClient.connect(g.port);
  assert.equal((await c.reply())?.code, 220);
  assert.equal((await c.command('EHLO client.example.org'))?.code, 250);
  closers.push(async () => c.close());
  return c;
}

const PIPELINED = [
  'MAIL FROM:<a@example.org>',
  'RCPT TO:<b@example.net>',
  'RCPT TO:<nobody@example.net>',
  'RCPT TO:<c@example.net>',
  'DATA',
];

async function replies(c: RawSmtpClient, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await c.reply())?.code ?? 0);
  return out;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-smtppipe-'));
  engine = await createBuiltinScanner();
});

after(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

describe('delivery to a server offering CHUNKING (RFC 3030)', { concurrency: false }, () => {
  const content = 'Subject: chunked\r\n\r\n.leading dot stays single\r\nbye\r\n';

  it('gets BDAT <size> LAST with the content as is, no DATA, no dot-stuffing', async () => {
    const rec = await recordingServer(true, { chunking: true });
    const c = await through(rec);
    const ehlo = await c.command('EHLO again.example.org');
    assert.equal(
      ehlo?.text.split('\n').filter((l) => l === 'CHUNKING').length,
      1,
      'one CHUNKING, the relay’s own',
    );
    c.write(`${PIPELINED.join('\r\n')}\r\n`);
    assert.deepEqual(await replies(c, 5), [250, 250, 550, 250, 354]);
    c.write(`${content.replace('\r\n.', '\r\n..')}.\r\n`);
    const r = await c.reply();
    assert.equal(r?.code, 250);
    assert.equal(r?.text, '2.0.0 queued (chunked)', 'the server’s own acceptance');
    assert.ok(!rec.commands.includes('DATA'));
    assert.equal(rec.messages.length, 1);
    const m = rec.messages[0]!;
    assert.ok(m.endsWith(content), 'unstuffed once by the relay, sent as is');
    assert.match(m, /^X-Scangate-Scanned: clean/);
  });

  it('a refused chunk reaches the client unchanged, the server is reset, the next message goes through', async () => {
    let refuse = true;
    const rec = await recordingServer(true, {
      chunking: true,
      refuseChunk: () => (refuse ? '554 5.7.1 content refused\r\n' : null),
    });
    const c = await through(rec);
    c.write(`${PIPELINED.join('\r\n')}\r\n`);
    await replies(c, 5);
    c.write(`${content}.\r\n`);
    const r = await c.reply();
    assert.equal(r?.code, 554);
    assert.equal(r?.text, '5.7.1 content refused');
    refuse = false;
    c.write(`${PIPELINED.join('\r\n')}\r\n`);
    assert.deepEqual(await replies(c, 5), [250, 250, 550, 250, 354]);
    c.write(`${content}.\r\n`);
    assert.equal((await c.reply())?.code, 250);
    assert.equal(rec.messages.length, 1);
    const bdat = rec.commands.findIndex((l) => l.startsWith('BDAT'));
    assert.equal(rec.commands[bdat + 1], 'RSET', 'RSET right after the refused chunk');
  });
});

describe('a message source that lies about its size (BDAT counts octets)', () => {
  it('never sends past the declared size; the connection is dropped, not QUIT', async () => {
    // The server leg's socket as a stream that records every byte the moment it is written.
    const received: Buffer[] = [];
    const socket = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        received.push(chunk);
        cb();
      },
    });
    const leg = new ServerLeg(new SmtpChannel(socket, 'server', 8192));
    leg.offers = new Set(['CHUNKING']);
    // Big enough to fill the stream's buffer, so the gathered write is flushed before the lie.
    const declared = 4 * 1024 * 1024;
    const liar: ObjectSource = {
      size: declared,
      read: async () => Buffer.alloc(0),
      async *stream() {
        yield Buffer.alloc(declared, 'a');
        yield Buffer.from('QUIT\r\n'); // would be read as a command
      },
    };
    await assert.rejects(leg.deliver(Buffer.from('X-A: b\r\n'), liar), UpstreamLost);
    leg.quit();
    assert.ok(socket.destroyed, 'dropped');
    const wire = Buffer.concat(received).toString('latin1');
    const header = `BDAT ${declared + 8} LAST\r\nX-A: b\r\n`;
    assert.ok(wire.startsWith(header), JSON.stringify(wire.slice(0, 40)));
    assert.ok(wire.length <= header.length + declared, 'never more than the declared octets');
    assert.ok(!wire.includes('QUIT'));
  });
});

describe('pipelining through the relay', { concurrency: false }, () => {
  it('a server offering PIPELINING gets the envelope as one group; replies come back in order', async () => {
    const rec = await recordingServer(true);
    const c = await through(rec);
    c.write(`${PIPELINED.join('\r\n')}\r\n`);
    assert.deepEqual(await replies(c, 5), [250, 250, 550, 250, 354]);
    c.write('Subject: pipelined\r\n\r\nhello\r\n.\r\n');
    assert.equal((await c.reply())?.code, 250);
    const group = rec.reads.find((r) => r.startsWith('MAIL'));
    assert.equal(
      group,
      `${PIPELINED.slice(0, 4).join('\r\n')}\r\n`,
      'MAIL and every RCPT in one write; DATA only after the scan',
    );
    assert.equal(rec.messages.length, 1);
    assert.match(rec.messages[0]!, /Subject: pipelined\r\n\r\nhello\r\n$/);
  });

  it('a server without PIPELINING gets one command at a time', async () => {
    const rec = await recordingServer(false);
    const c = await through(rec);
    c.write(`${PIPELINED.join('\r\n')}\r\n`);
    assert.deepEqual(await replies(c, 5), [250, 250, 550, 250, 354]);
    c.write('Subject: lockstep\r\n\r\nhello\r\n.\r\n');
    assert.equal((await c.reply())?.code, 250);
    assert.deepEqual(rec.early, [], 'no command was sent before the reply to the one before it');
    assert.equal(rec.messages.length, 1);
  });

  it('the relay’s own answer keeps its place in a pipelined sequence', async () => {
    const rec = await recordingServer(true);
    const c = await through(rec);
    c.write(
      [
        'MAIL FROM:<a@example.org>',
        'RSET',
        'MAIL FROM:<a@example.org> SIZE=900000',
        'RCPT TO:<b@example.net>',
        'NOOP',
        '',
      ].join('\r\n'),
    );
    // 552 is ours (SIZE over maxMessageSize, never forwarded); the RCPT after it meets a server with
    // no transaction (the RSET ended it) and gets the server's own 503.
    assert.deepEqual(await replies(c, 5), [250, 250, 552, 503, 250]);
    assert.ok(!rec.reads.join('').includes('SIZE=900000'));
  });
});
