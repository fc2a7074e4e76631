/**
 * The clamd wire format, sans-IO: replies split anywhere reassemble, every reply maps to a verdict
 * (never a throw), and the exact formats of clamd(8) map to the right statuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  chunkHeader,
  command,
  parseScanReply,
  ReplyReader,
} from '../../src/engine/backends/clamd-protocol.js';
import { parseAddress, parseDuration, parseSize } from '../../src/util/units.js';

test('clamd reply formats map to verdicts', () => {
  assert.deepEqual(parseScanReply('stream: OK', ['x']), { status: 'clean' });
  assert.deepEqual(parseScanReply('stream: Eicar-Signature FOUND', ['x']), {
    status: 'infected',
    signature: 'Eicar-Signature',
    location: ['x'],
  });
  assert.deepEqual(parseScanReply('3: stream: Win.Test.EICAR_HDB-1 FOUND', ['y']), {
    status: 'infected',
    signature: 'Win.Test.EICAR_HDB-1',
    location: ['y'],
  });
  const limit = parseScanReply('INSTREAM size limit exceeded. ERROR', ['x']);
  assert.equal(limit.status === 'error' && limit.code, 'ERR_CLAMD_SIZE_LIMIT');
  const err = parseScanReply("stream: Can't allocate memory ERROR", ['x']);
  assert.equal(err.status === 'error' && err.code, 'ERR_CLAMD_ERROR');
  assert.equal(parseScanReply('garbage', ['x']).status, 'error');
  assert.deepEqual(command('INSTREAM'), Buffer.from('zINSTREAM\0'));
  assert.deepEqual(chunkHeader(258), Buffer.from([0, 0, 1, 2]));
});

test('a reply split at any points reassembles to the same text', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 6 }), (s, rawCuts) => {
      const text = s.replace(/[\0\n]/g, '');
      const wire = Buffer.from(`${text}\0`);
      const cuts = [...new Set(rawCuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
      const reader = new ReplyReader();
      let got: string | null = null;
      let prev = 0;
      for (const c of [...cuts, wire.length]) {
        const r = reader.push(wire.subarray(prev, c));
        if (r !== null && got === null) got = r;
        prev = c;
      }
      assert.equal(got, Buffer.from(text).toString('utf8'));
    }),
    { numRuns: 500 },
  );
});

test('arbitrary replies always give a verdict; an endless reply is refused, not buffered', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => {
      const v = parseScanReply(s, ['x']);
      assert.ok(['clean', 'infected', 'error'].includes(v.status));
    }),
    { numRuns: 1000 },
  );
  const reader = new ReplyReader(1024);
  assert.throws(() => {
    for (let i = 0; i < 10; i++) reader.push(Buffer.alloc(200, 0x41));
  }, /longer than 1024/);
});

test('size, duration and address parsers accept or reject cleanly on any string', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), (s) => {
      for (const parse of [parseSize, parseDuration, parseAddress]) {
        try {
          parse(s);
        } catch (e) {
          assert.ok(e instanceof RangeError, String(e));
        }
      }
    }),
    { numRuns: 1000 },
  );
  fc.assert(
    fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom('', 'KB', 'MB', 'GB'), (n, u) => {
      const mult = { '': 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[u];
      assert.equal(parseSize(`${n}${u}`), n * mult);
    }),
  );
});
