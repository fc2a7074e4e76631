/**
 * BDAT parsing pieces (RFC 3030): the reader's chunk mode hands out exactly the announced octets
 * however the bytes arrive, then reads lines again; the line-ending check agrees with a plain
 * reading of RFC 5321 §2.3.8 whatever the chunking; BDAT arguments.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LineEndingCheck, parseBdat } from '../../src/protocols/smtp/chunking.js';
import { SmtpReader } from '../../src/protocols/smtp/reader.js';
import { cut } from '../helpers/smtp-cut.js';

/** RFC 5321 §2.3.8 read plainly: every CR is followed by LF and every LF preceded by CR. */
function crlfOnly(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0d && b[i + 1] !== 0x0a) return false;
    if (b[i] === 0x0a && b[i - 1] !== 0x0d) return false;
  }
  return true;
}

const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
/** Content rich in CR, LF, dots: where the bugs would be. */
const mailish = fc
  .array(fc.constantFrom('\r', '\n', '\r\n', '.', 'a', 'QUIT', ' '), { maxLength: 80 })
  .map((a) => Buffer.from(a.join(''), 'latin1'));

describe('SmtpReader chunk mode', () => {
  it('hands out exactly the announced octets, then lines again, however the bytes are cut', () => {
    fc.assert(
      fc.property(fc.oneof(bytes, mailish), fc.array(fc.nat(), { maxLength: 8 }), (content, cuts) => {
        const wire = Buffer.concat([content, Buffer.from('NOOP\r\n')]);
        const r = new SmtpReader();
        r.startChunk(content.length);
        const got: Buffer[] = [];
        let ended = false;
        let line: string | null = null;
        for (const piece of cut(wire, cuts)) {
          r.push(piece);
          for (let ev = r.next(); ev; ev = r.next()) {
            if (ev.type === 'data') got.push(ev.chunk);
            else if (ev.type === 'end') ended = true;
            else if (ev.type === 'line') line = ev.line.toString();
          }
        }
        assert.ok(ended);
        assert.ok(Buffer.concat(got).equals(content));
        assert.equal(line, 'NOOP');
        assert.equal(r.inData, false);
      }),
    );
  });

  it('a zero-octet chunk ends at once', () => {
    const r = new SmtpReader();
    r.startChunk(0);
    assert.deepEqual(r.next(), { type: 'end' });
    assert.equal(r.next(), null);
  });
});

describe('LineEndingCheck', () => {
  it('agrees with a plain reading of RFC 5321 §2.3.8 whatever the chunking', () => {
    fc.assert(
      fc.property(fc.oneof(bytes, mailish), fc.array(fc.nat(), { maxLength: 8 }), (content, cuts) => {
        const check = new LineEndingCheck();
        for (const piece of cut(content, cuts)) check.push(piece);
        assert.equal(check.clean, crlfOnly(content), JSON.stringify(content.toString('latin1')));
      }),
      { numRuns: 500 },
    );
  });
});

describe('parseBdat', () => {
  it('takes a size and an optional LAST, nothing else', () => {
    assert.deepEqual(parseBdat('100'), { size: 100, last: false });
    assert.deepEqual(parseBdat('0 LAST'), { size: 0, last: true });
    assert.deepEqual(parseBdat('7 last'), { size: 7, last: true });
    for (const bad of ['', 'LAST', '-1', '1.5', '10 LAST x', '1e3', '0x10', '1234567890123456'])
      assert.equal(parseBdat(bad), null, bad);
  });
});
