import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BufferSource, type ObjectSource } from '../../src/engine/source.js';
import { tagSubject } from '../../src/protocols/smtp/subject-tag.js';

async function all(s: ObjectSource, chunk?: number): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of s.stream(0, s.size, chunk)) parts.push(c);
  return Buffer.concat(parts).toString('latin1');
}

const TAG = '[PHISHING?]';

test('subject tag: first Subject field, folded and encoded values kept, added when missing, never twice', async () => {
  const cases: [string, string][] = [
    [
      'From: a@b\r\nSubject: Hello\r\n\r\nbody\r\n',
      'From: a@b\r\nSubject: [PHISHING?] Hello\r\n\r\nbody\r\n',
    ],
    ['subject:Hello\r\n there\r\nX: y\r\n\r\nb', 'subject:[PHISHING?] Hello\r\n there\r\nX: y\r\n\r\nb'],
    ['Subject: =?utf-8?B?w6TDtsO8?=\r\n\r\n', 'Subject: [PHISHING?] =?utf-8?B?w6TDtsO8?=\r\n\r\n'],
    [
      'From: a@b\r\n\r\nSubject: in the body\r\n',
      'Subject: [PHISHING?]\r\nFrom: a@b\r\n\r\nSubject: in the body\r\n',
    ],
    ['X-Subject: no\r\nSubject: yes\r\n\r\n', 'X-Subject: no\r\nSubject: [PHISHING?] yes\r\n\r\n'],
    ['Subject: \t  spaced\r\n\r\n', 'Subject: \t  [PHISHING?] spaced\r\n\r\n'],
  ];
  for (const [input, want] of cases)
    assert.equal(await all(await tagSubject(new BufferSource(Buffer.from(input, 'latin1')), TAG)), want);
  const once = await tagSubject(new BufferSource(Buffer.from(cases[0]![1], 'latin1')), TAG);
  assert.equal(await all(once), cases[0]![1], 'already tagged: unchanged');
});

test('subject tag: the body is byte-identical and reads agree with streams at any offsets and chunk sizes', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.string({ maxLength: 40 }).filter((s) => !/[\r\n]/.test(s) && !/^[ \t]/.test(s)),
      fc.uint8Array({ maxLength: 3000 }),
      fc.integer({ min: 1, max: 700 }),
      fc.nat(),
      fc.nat(),
      async (subject, body, chunk, a, b) => {
        const head = Buffer.from(`From: x@y\r\nSubject: ${subject}\r\n\r\n`, 'latin1');
        const src = await tagSubject(new BufferSource(Buffer.concat([head, body])), TAG);
        const whole = Buffer.from(await all(src, chunk), 'latin1');
        const want = Buffer.concat([
          Buffer.from(`From: x@y\r\nSubject: ${TAG} ${subject}\r\n\r\n`, 'latin1'),
          body,
        ]);
        if (subject.startsWith(TAG)) return true;
        assert.deepEqual(whole, want);
        const start = a % (src.size + 1);
        const len = b % (src.size + 1);
        assert.deepEqual(
          await src.read(start, len),
          want.subarray(start, Math.min(want.length, start + len)),
        );
        return true;
      },
    ),
    { numRuns: 200 },
  );
});
