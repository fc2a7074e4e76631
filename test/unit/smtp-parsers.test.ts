/**
 * The sans-IO SMTP pieces against hostile input (issue 4, "done when" 7): the line/data reader, DATA
 * dot-(un)stuffing, the reply assembler, the command parser and EHLO rewriting. Property tests with
 * fast-check: any byte sequence, split anywhere, gives the same events and never a crash.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import {
  declaredSize,
  mailParameters,
  parseCommand,
  redactCommand,
} from '../../src/protocols/smtp/command.js';
import { DotStuffer, DotUnstuffer, dotStuff, dotUnstuff } from '../../src/protocols/smtp/dot.js';
import { ehloKeywords, rewriteEhlo } from '../../src/protocols/smtp/ehlo.js';
import { type ReaderEvent, SmtpReader } from '../../src/protocols/smtp/reader.js';
import { formatReply, type Reply, ReplyAssembler } from '../../src/protocols/smtp/reply.js';
import { cut } from '../helpers/smtp-cut.js';

const b = (s: string) => Buffer.from(s, 'latin1');

/** Feeds `input` in the given pieces and collects every event (data chunks merged). */
function run(reader: SmtpReader, pieces: Buffer[], onLine?: (line: string, r: SmtpReader) => void): string[] {
  const out: string[] = [];
  let data = '';
  const take = (ev: ReaderEvent) => {
    if (ev.type === 'data') {
      data += ev.chunk.toString('latin1');
      return;
    }
    if (data) {
      out.push(`data:${data}`);
      data = '';
    }
    if (ev.type === 'line') {
      const l = ev.line.toString('latin1');
      out.push(`${ev.bareLf ? 'lf' : 'line'}:${l}`);
      onLine?.(l, reader);
    } else if (ev.type === 'overlong') out.push('overlong');
    else out.push('end');
  };
  for (const p of pieces) {
    reader.push(p);
    for (let ev = reader.next(); ev; ev = reader.next()) take(ev);
  }
  if (data) out.push(`data:${data}`);
  return out;
}

const startDataOnDATA = (l: string, r: SmtpReader) => {
  if (l === 'DATA') r.startData();
};

describe('SmtpReader', () => {
  it('splits CRLF lines, flags bare LF, and switches to data after DATA', () => {
    const wire = b('EHLO a\r\nMAIL FROM:<x>\nDATA\r\nSubject: s\r\n\r\n..dot\r\nbare\nend\r\n.\r\nQUIT\r\n');
    assert.deepEqual(run(new SmtpReader(), [wire], startDataOnDATA), [
      'line:EHLO a',
      'lf:MAIL FROM:<x>',
      'line:DATA',
      'data:Subject: s\r\n\r\n.dot\r\nbare\r\nend\r\n',
      'end',
      'line:QUIT',
    ]);
  });

  it('gives the same events however the bytes are split (property)', () => {
    const token = fc.constantFrom(
      'EHLO x\r\n',
      'NOOP\n',
      'DATA\r\n',
      '.',
      '..',
      '\r\n.\r\n',
      '\r',
      '\n',
      'abc',
      '\r\n',
      'X'.repeat(30),
    );
    fc.assert(
      fc.property(
        fc.array(token, { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (tokens, points) => {
          const wire = b(tokens.join(''));
          const whole = run(new SmtpReader(64), [wire], startDataOnDATA);
          const pieces = run(new SmtpReader(64), cut(wire, points), startDataOnDATA);
          assert.deepEqual(pieces, whole);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('a 10 MB command line: one "overlong", bounded memory, the next command still parsed', () => {
    const r = new SmtpReader(2048);
    const events: string[] = [];
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    let maxBuffered = 0;
    const drain = () => {
      for (let ev = r.next(); ev; ev = r.next())
        events.push(ev.type === 'line' ? `line:${ev.line}` : ev.type);
      maxBuffered = Math.max(maxBuffered, r.buffered);
    };
    r.push(b('MAIL FROM:<'));
    for (let i = 0; i < 160; i++) {
      r.push(chunk);
      drain();
    }
    r.push(b('>\r\nNOOP\r\n'));
    drain();
    assert.deepEqual(events, ['overlong', 'line:NOOP']);
    assert.ok(maxBuffered < 128 * 1024, `buffered at most ${maxBuffered} bytes`);
  });

  it('discard() drops everything pipelined (STARTTLS)', () => {
    const r = new SmtpReader();
    r.push(b('STARTTLS\r\nMAIL FROM:<evil>\r\nRCPT TO:<x>\r\n'));
    const first = r.next();
    assert.equal(first?.type, 'line');
    assert.ok(r.discard() > 0);
    assert.equal(r.next(), null);
  });

  it('never throws on arbitrary bytes, in any mode (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }),
        fc.boolean(),
        (chunks, data) => {
          const r = new SmtpReader(100);
          if (data) r.startData();
          for (const c of chunks) {
            r.push(Buffer.from(c));
            for (let ev = r.next(); ev; ev = r.next()) {
              if (ev.type === 'line') assert.ok(ev.line.length <= 100);
            }
          }
          assert.ok(r.buffered <= 100 || r.inData);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('DATA transparency (RFC 5321 §4.5.2)', () => {
  it('unstuffs leading dots and stops at CRLF.CRLF, keeping what follows', () => {
    const { content, rest } = dotUnstuff(b('a\r\n..b\r\n.c\r\n\r\n.\r\nQUIT\r\n'));
    assert.equal(content.toString(), 'a\r\n.b\r\nc\r\n\r\n');
    assert.equal(rest?.toString(), 'QUIT\r\n');
  });

  it('an empty message is just ".CRLF"', () => {
    const { content, rest } = dotUnstuff(b('.\r\n'));
    assert.equal(content.length, 0);
    assert.equal(rest?.length, 0);
  });

  it('SMTP smuggling: LF.LF, CR.CR and LF.CRLF are not the end; bare CR/LF become CRLF', () => {
    const smuggle = b('x\n.\nMAIL FROM:<a>\r\ny\r.\rz\r\nw\n.\r\nv\r\n.\r\n');
    const u = new DotUnstuffer();
    const { out, rest } = u.write(smuggle);
    assert.equal(rest?.length, 0);
    assert.equal(out.toString('latin1'), 'x\r\n.\r\nMAIL FROM:<a>\r\ny\r\n.\r\nz\r\nw\r\n.\r\nv\r\n');
    assert.ok(u.normalized >= 4);
    // Stuffed again for the server, the dot lines are doubled: the server sees one end only.
    const wire = dotStuff(out).toString('latin1');
    assert.equal(wire.indexOf('\r\n.\r\n'), wire.length - 5);
  });

  it('stuff then unstuff is the identity on CRLF content, in any chunking (property)', () => {
    const line = fc
      .array(fc.constantFrom('.', 'a', ' ', '..', '\u00e9', 'x'), { maxLength: 6 })
      .map((a) => a.join(''));
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (lines, points) => {
          const content = b(lines.map((l) => `${l}\r\n`).join(''));
          const s = new DotStuffer();
          const wire = Buffer.concat([...cut(content, points).map((p) => s.write(p)), s.end(), b('NEXT')]);
          const u = new DotUnstuffer();
          const outs: Buffer[] = [];
          let rest: Buffer | null = null;
          for (const p of cut(wire, points)) {
            if (rest) {
              rest = Buffer.concat([rest, p]);
              continue;
            }
            const r = u.write(p);
            outs.push(r.out);
            rest = r.rest;
          }
          assert.equal(Buffer.concat(outs).toString('latin1'), content.toString('latin1'));
          assert.equal(rest?.toString(), 'NEXT');
        },
      ),
      { numRuns: 400 },
    );
  });

  it('any bytes: the output has only CRLF line breaks and re-stuffed ends exactly once (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const { content } = dotUnstuff(Buffer.from(bytes));
        const text = content.toString('latin1');
        assert.doesNotMatch(text, /\r(?!\n)|(?<!\r)\n/);
        // What we send the server ends where we end it, and nowhere earlier.
        const again = dotUnstuff(dotStuff(content));
        const terminated = content.length === 0 || content.toString('latin1').endsWith('\r\n');
        assert.ok(again.content.equals(terminated ? content : Buffer.concat([content, b('\r\n')])));
        assert.equal(again.rest?.length, 0);
      }),
      { numRuns: 500 },
    );
  });

  it('the streaming unstuffer agrees with a line-by-line reading of the RFC, in any chunking (property)', () => {
    /** Reference: split into lines at CRLF, bare CR or bare LF; "." ends only after and before CRLF. */
    const reference = (wire: string): { content: string; rest: string } => {
      let content = '';
      let prevProper = true;
      let pos = 0;
      for (;;) {
        const m = /\r\n|\r|\n/.exec(wire.slice(pos));
        if (!m) throw new Error('no end');
        const line = wire.slice(pos, pos + m.index);
        const proper = m[0] === '\r\n';
        pos += m.index + m[0].length;
        if (line === '.' && proper && prevProper) return { content, rest: wire.slice(pos) };
        content += `${line === '.' ? '.' : line.startsWith('.') ? line.slice(1) : line}\r\n`;
        prevProper = proper;
      }
    };
    const piece = fc.constantFrom('\r', '\n', '.', 'a', 'b', '\r\n', '..', ' ');
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (pieces, points) => {
          const wire = `${pieces.join('')}\r\n.\r\nTAIL`;
          const expected = reference(wire);
          const u = new DotUnstuffer();
          let out = '';
          let rest: string | null = null;
          for (const p of cut(b(wire), points)) {
            if (rest !== null) {
              rest += p.toString('latin1');
              continue;
            }
            const r = u.write(p);
            out += r.out.toString('latin1');
            if (r.rest) rest = r.rest.toString('latin1');
          }
          assert.equal(out, expected.content);
          assert.equal(rest, expected.rest);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('an unterminated last line gets its CRLF before the final dot', () => {
    assert.equal(dotStuff(b('abc')).toString(), 'abc\r\n.\r\n');
    assert.equal(dotStuff(b('')).toString(), '.\r\n');
    assert.equal(dotStuff(b('.x\r\n')).toString(), '..x\r\n.\r\n');
  });
});

describe('ReplyAssembler', () => {
  it('assembles multi-line replies and round-trips through formatReply', () => {
    const a = new ReplyAssembler();
    assert.equal(a.push(b('250-mx hello')), null);
    assert.equal(a.push(b('250-PIPELINING')), null);
    assert.deepEqual(a.push(b('250 SIZE 10')), { code: 250, lines: ['mx hello', 'PIPELINING', 'SIZE 10'] });
    assert.deepEqual(a.push(b('354')), { code: 354, lines: [''] });
    assert.equal(formatReply({ code: 250, lines: ['a', 'b'] }).toString(), '250-a\r\n250 b\r\n');
  });

  it('malformed replies are a ProtocolError, never anything else (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 20 }), { maxLength: 6 }), (lines) => {
        const a = new ReplyAssembler();
        for (const l of lines) {
          try {
            a.push(b(l));
          } catch (e) {
            assert.ok(e instanceof ProtocolError, String(e));
            return;
          }
        }
      }),
      { numRuns: 500 },
    );
    assert.throws(() => new ReplyAssembler().push(b('2500 x')), ProtocolError);
    const a = new ReplyAssembler();
    a.push(b('250-a'));
    assert.throws(() => a.push(b('550 b')), ProtocolError);
  });

  it('format then assemble gives the same reply (property)', () => {
    const text = fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, ''));
    fc.assert(
      fc.property(
        fc.integer({ min: 200, max: 559 }),
        fc.array(text, { minLength: 1, maxLength: 5 }),
        (code, lines) => {
          fc.pre(code % 100 < 60);
          const wire = formatReply({ code, lines }).toString('utf8');
          const a = new ReplyAssembler();
          let got: Reply | null = null;
          for (const l of wire.split('\r\n').slice(0, -1)) got = a.push(Buffer.from(l, 'utf8'));
          assert.equal(got?.code, code);
          assert.deepEqual(
            got?.lines,
            lines.map((l, i) => (i === lines.length - 1 ? l : l)),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('commands', () => {
  it('parses verbs case-insensitively and keeps the raw line', () => {
    const r = parseCommand(b('mail FROM:<a@b> SIZE=100 BODY=8BITMIME'));
    assert.ok(r.ok);
    assert.equal(r.command.verb, 'MAIL');
    assert.equal(r.command.raw, 'mail FROM:<a@b> SIZE=100 BODY=8BITMIME');
    assert.equal(declaredSize(r.command.arg), 100);
    assert.equal(mailParameters(r.command.arg).get('BODY'), '8BITMIME');
    assert.equal(parseCommand(b('')).ok, false);
    assert.equal(parseCommand(b('MA\u0000IL')).ok, false);
    assert.equal(parseCommand(b('12 x')).ok, false);
    assert.ok(parseCommand(Buffer.from('RCPT TO:<j\u00f6rg@example.org>', 'utf8')).ok, 'SMTPUTF8 addresses');
  });

  it('never throws on arbitrary bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const r = parseCommand(Buffer.from(bytes));
        if (r.ok) assert.match(r.command.verb, /^[A-Z][A-Z0-9-]+$/);
        else assert.ok(r.reason.length > 0);
      }),
      { numRuns: 1000 },
    );
  });

  it('AUTH is logged without its credential', () => {
    const r = parseCommand(b('AUTH PLAIN AGFsaWNlAHMzY3JldA=='));
    assert.ok(r.ok);
    assert.equal(redactCommand(r.command), 'AUTH PLAIN ****');
    assert.doesNotMatch(redactCommand(r.command), /AGFs/);
  });
});

describe('EHLO rewriting', () => {
  const server: Reply = {
    code: 250,
    lines: [
      'mx.example.net hello',
      'PIPELINING',
      'SIZE 104857600',
      'STARTTLS',
      'CHUNKING',
      'BINARYMIME',
      'AUTH PLAIN LOGIN',
      'XCLIENT NAME ADDR',
      '8BITMIME',
      'SMTPUTF8',
      'X-WEIRD',
    ],
  };

  it('STARTTLS for our client leg, AUTH only when allowed, no CHUNKING/XCLIENT/unknown, SIZE capped', () => {
    const plain = rewriteEhlo(server, { offerStartTls: true, allowAuth: false, maxMessageSize: 1000 });
    assert.deepEqual(plain.lines, [
      'mx.example.net hello',
      'PIPELINING',
      'SIZE 1000',
      '8BITMIME',
      'SMTPUTF8',
      'STARTTLS',
    ]);
    const tls = rewriteEhlo(server, { offerStartTls: false, allowAuth: true, maxMessageSize: 1e9 });
    assert.deepEqual([...ehloKeywords(tls)], ['PIPELINING', 'SIZE', 'AUTH', '8BITMIME', 'SMTPUTF8']);
    assert.ok(tls.lines.includes('SIZE 104857600'));
  });

  it('adds SIZE when the server has none, leaves non-250 replies alone', () => {
    const r = rewriteEhlo(
      { code: 250, lines: ['mx'] },
      { offerStartTls: false, allowAuth: true, maxMessageSize: 5 },
    );
    assert.deepEqual(r.lines, ['mx', 'SIZE 5']);
    const err = { code: 554, lines: ['no'] };
    assert.equal(rewriteEhlo(err, { offerStartTls: true, allowAuth: true, maxMessageSize: 5 }), err);
  });
});
