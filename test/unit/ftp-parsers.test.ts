/**
 * FTP control-channel parsers: replies (multi-line, RFC 959 §4.2; the STOU name, RFC 1123
 * §4.1.2.9), commands (Telnet sequences, control characters), and the four data-address notations
 * (PORT/227, EPRT/229, RFC 2428).
 * Properties: format∘parse round trips, chunking-free reply assembly; hostile input never throws
 * anything but the typed refusal.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import {
  format227,
  format229,
  formatEprtArg,
  formatPortArg,
  parse227,
  parse229,
  parseEprtArg,
  parsePortArg,
  parsePortRange,
  plainAddress,
  sameAddress,
} from '../../src/protocols/ftp/address.js';
import { parseCommand, redactCommand } from '../../src/protocols/ftp/command.js';
import { rewriteFeat } from '../../src/protocols/ftp/feat.js';
import {
  type FtpReply,
  FtpReplyAssembler,
  formatReply,
  stouFileName,
} from '../../src/protocols/ftp/reply.js';

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
const port = fc.integer({ min: 1, max: 65_535 });
const text = fc.string({
  unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)),
  maxLength: 60,
});

function assemble(wire: string): FtpReply[] {
  const a = new FtpReplyAssembler();
  const out: FtpReply[] = [];
  for (const line of wire.split('\r\n').slice(0, -1)) {
    const r = a.push(line);
    if (r) out.push(r);
  }
  return out;
}

describe('FTP replies', () => {
  test('format then assemble gives the same reply (single and multi-line, digits in the middle)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.array(text, { minLength: 1, maxLength: 6 }),
        (code, lines) => {
          const r = { code, lines };
          const back = assemble(formatReply(r));
          assert.equal(back.length, 1);
          assert.equal(back[0]!.code, code);
          assert.equal(back[0]!.lines.length, lines.length);
          // Middle lines that would end the reply early are indented (RFC 959 §4.2).
          back[0]!.lines.forEach((l, i) => {
            assert.equal(l.trimStart(), lines[i]!.trimStart());
          });
        },
      ),
    );
  });

  test('a multi-line reply ends only at "NNN " with its own code', () => {
    const r = assemble('211-Features:\r\n EPSV\r\n226 not the end\r\n211-still not\r\n211 End\r\n');
    assert.deepEqual(r, [
      { code: 211, lines: ['Features:', ' EPSV', '226 not the end', '211-still not', 'End'] },
    ]);
  });

  test('hostile reply lines are a ProtocolError, never another exception', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 20 }), { maxLength: 10 }), (lines) => {
        const a = new FtpReplyAssembler();
        for (const l of lines) {
          try {
            a.push(l);
          } catch (e) {
            assert.ok(e instanceof ProtocolError, String(e));
            return;
          }
        }
      }),
    );
    assert.throws(() => new FtpReplyAssembler().push('abc'), ProtocolError);
    assert.throws(() => new FtpReplyAssembler().push('600 no'), ProtocolError);
    assert.throws(() => new FtpReplyAssembler().push(''), ProtocolError);
  });

  test('an endless multi-line reply is cut off', () => {
    const a = new FtpReplyAssembler();
    a.push('211-start');
    assert.throws(() => {
      for (let i = 0; i < 20_000; i++) a.push(`line ${i}`);
    }, ProtocolError);
  });
});

describe('FTP commands', () => {
  test('verb and argument; Telnet IP/DM before ABOR dropped', () => {
    const c = parseCommand(Buffer.from('retr some file.txt'));
    assert.ok(c.ok);
    assert.equal(c.command.verb, 'RETR');
    assert.equal(c.command.arg, 'some file.txt');
    const abor = parseCommand(Buffer.from([0xff, 0xf4, 0xff, 0xf2, ...Buffer.from('ABOR')]));
    assert.ok(abor.ok);
    assert.equal(abor.command.verb, 'ABOR');
  });

  test('control characters and non-letter verbs are refused', () => {
    for (const bad of ['RETR a\rDELE b', 'RETR a\0b', '', '   ', '12 x', 'R', 'VERYLONGVERB x', 'RE/TR x']) {
      const c = parseCommand(Buffer.from(bad, 'latin1'));
      assert.equal(c.ok, false, bad);
    }
  });

  test('any bytes: a command or a refusal, never a throw; accepted commands carry no control bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const c = parseCommand(Buffer.from(bytes));
        if (c.ok) {
          assert.match(c.command.verb, /^[A-Z]{3,8}$/);
          assert.doesNotMatch(c.command.raw, /[\0-\x1f\x7f]/);
        }
      }),
    );
  });

  test('PASS and ACCT are never shown', () => {
    const c = parseCommand(Buffer.from('PASS hunter2'));
    assert.ok(c.ok);
    assert.equal(redactCommand(c.command), 'PASS ****');
  });
});

describe('FTP data addresses', () => {
  test('PORT and 227 round trip', () => {
    fc.assert(
      fc.property(ipv4, port, (host, p) => {
        assert.deepEqual(parsePortArg(formatPortArg({ host, port: p })), { host, port: p });
        assert.deepEqual(parse227(`227 ${format227({ host, port: p })}`), { host, port: p });
      }),
    );
  });

  test('227 found whatever the text around it (RFC 1123 §4.1.2.6)', () => {
    assert.deepEqual(parse227('Entering Passive Mode 10,0,0,1,4,1'), { host: '10.0.0.1', port: 1025 });
    assert.deepEqual(parse227('=127,0,0,1,195,80'), { host: '127.0.0.1', port: 50000 });
    assert.equal(parse227('Entering Passive Mode (300,0,0,1,4,1)'), null);
    assert.equal(parse227('no address'), null);
  });

  test('EPRT and 229 round trip (IPv4 and IPv6)', () => {
    fc.assert(
      fc.property(fc.oneof(ipv4, fc.ipV6()), port, (host, p) => {
        const e = parseEprtArg(formatEprtArg({ host, port: p }));
        assert.ok(!('error' in e), JSON.stringify(e));
        assert.equal(e.port, p);
        assert.equal(parse229(format229(p)), p);
      }),
    );
    assert.equal(parse229('Entering Extended Passive Mode (!!!6446!)'), 6446);
  });

  test('malformed PORT/EPRT arguments and 229 texts are refused with the right kind', () => {
    for (const bad of ['1,2,3,4,5', '1,2,3,4,5,6,7', '256,0,0,1,1,1', '1,2,3,4,0,0', 'a,b,c,d,e,f', '']) {
      assert.ok('error' in parsePortArg(bad), bad);
    }
    assert.deepEqual((parseEprtArg('|3|1.2.3.4|5|') as { error: string }).error, 'family');
    for (const bad of [
      '|1|::1|5|',
      '|2|1.2.3.4|5|',
      '|1|1.2.3.4|0|',
      '|1|1.2.3.4|70000|',
      '1|1.2.3.4|5|',
      '|1|1.2.3.4|5',
      '',
    ]) {
      const e = parseEprtArg(bad);
      assert.ok('error' in e && e.error === 'syntax', bad);
    }
    for (const bad of ['(|||0|)', '(||6446|)', '(|!|6446|)', '(|||99999|)', 'none'])
      assert.equal(parse229(bad), null, bad);
  });

  test('any text: parsers return a value or a refusal, never throw', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        parsePortArg(s);
        parseEprtArg(s);
        parse227(s);
        parse229(s);
      }),
    );
  });

  test('addresses compare across IPv4-mapped IPv6; port ranges', () => {
    assert.equal(plainAddress('::ffff:127.0.0.1'), '127.0.0.1');
    assert.ok(sameAddress('::ffff:127.0.0.1', '127.0.0.1'));
    assert.ok(!sameAddress('127.0.0.2', '127.0.0.1'));
    assert.ok(!sameAddress(undefined, '127.0.0.1'));
    assert.deepEqual(parsePortRange('50000-50100'), { min: 50000, max: 50100 });
    for (const bad of ['5-4', '0-10', '1-70000', 'x']) assert.throws(() => parsePortRange(bad), RangeError);
  });
});

describe('FEAT rewriting', () => {
  const server: FtpReply = {
    code: 211,
    lines: ['Features:', ' AUTH TLS', ' PBSZ', ' PROT', ' CCC', ' MDTM', ' SIZE', ' UTF8', 'End'],
  };
  test('client leg explicit: the gateway offers AUTH TLS/PBSZ/PROT and the data modes', () => {
    const r = rewriteFeat(server, 'explicit');
    const f = r.lines.slice(1, -1).map((l) => l.trim());
    for (const x of ['AUTH TLS', 'PBSZ', 'PROT', 'EPSV', 'EPRT', 'PASV', 'MDTM', 'SIZE', 'UTF8'])
      assert.ok(f.includes(x), x);
    assert.ok(!f.includes('CCC'));
  });
  test('client leg plain: no TLS features', () => {
    const f = rewriteFeat(server, 'none').lines.map((l) => l.trim());
    assert.ok(!f.some((l) => /^(AUTH|PBSZ|PROT)/.test(l)));
  });
  test('a refusal passes unchanged', () => {
    const r = { code: 502, lines: ['no'] };
    assert.equal(rewriteFeat(r, 'explicit'), r);
  });
});

describe('STOU file name (RFC 1123 §4.1.2.9: "150 FILE: pppp")', () => {
  test('the name as the server gave it, spaces included; none when the reply has no FILE: line', () => {
    assert.equal(stouFileName({ code: 150, lines: ['FILE: STOU.1'] }), 'STOU.1');
    assert.equal(stouFileName({ code: 125, lines: ['FILE: a name with  spaces '] }), 'a name with  spaces ');
    assert.equal(
      stouFileName({ code: 150, lines: ['Opening data connection.', 'FILE: x/y.2', 'ok'] }),
      'x/y.2',
    );
    assert.equal(stouFileName({ code: 150, lines: ['Ok to send data.'] }), null);
    assert.equal(stouFileName({ code: 150, lines: ['FILE: '] }), null);
    assert.equal(stouFileName({ code: 150, lines: ['FILE: a\0b'] }), null);
  });
});
