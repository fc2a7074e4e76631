/** Reading and stamping mail for the registry (mail.ts, mailcheck.ts): parser properties and hostile input. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RegistryError } from '../../src/registry/errors.js';
import { dateOfHeader, mailFacts, parseMail, stampMail } from '../../src/registry/mail.js';
import { queryOfMail } from '../../src/registry/mailcheck.js';

const MAIL = [
  'Received: from x by y; Mon, 23 Nov 2026 09:00:00 +0000',
  'From: "Bank, Notices" <Notices@BANK.example>',
  'To: Customer <c@mail.example>, other@mail.example',
  'Date: Mon, 23 Nov 2026 23:59:58 -0800',
  'Subject: =?utf-8?B?w4RuZGVydW5n?= of\r\n terms',
  '',
  'Body line  ',
  '',
  '',
].join('\r\n');

test('facts: first From and To addresses, the date as written, decoded and unfolded subject', () => {
  const f = mailFacts(Buffer.from(MAIL));
  assert.equal(f.from, 'Notices@BANK.example');
  assert.equal(f.to, 'c@mail.example');
  assert.equal(f.date, '20261123', "the sender's own calendar day, not UTC");
  assert.equal(f.contentPrefix, 'Subject: Änderung of terms\n\n');
  assert.equal(f.claimsRegistered, false);
  assert.equal(dateOfHeader('23 Nov 26 10:00 GMT'), '20261123');
  assert.equal(dateOfHeader('Tue, 1 Feb 1999 10:00:00 +0000'), '19990201');
  assert.equal(dateOfHeader('yesterday'), undefined);
});

test('the signature of a mail survives LF line endings, re-encoded subject words and added trace headers', () => {
  const sig = queryOfMail(Buffer.from(MAIL)).signature;
  const lf = MAIL.replace(/\r\n/g, '\n');
  assert.equal(queryOfMail(Buffer.from(lf)).signature, sig);
  const reencoded = MAIL.replace(
    '=?utf-8?B?w4RuZGVydW5n?= of\r\n terms',
    '=?iso-8859-1?Q?=C4nderung?= of terms',
  );
  assert.equal(queryOfMail(Buffer.from(reencoded)).signature, sig);
  assert.equal(queryOfMail(Buffer.from(`Delivered-To: c@mail.example\r\n${MAIL}`)).signature, sig);
  assert.notEqual(queryOfMail(Buffer.from(MAIL.replace('of', 'off'))).signature, sig, 'subject is covered');
  assert.notEqual(queryOfMail(Buffer.from(MAIL.replace('Body line', 'Body lime'))).signature, sig);
});

test('stamping: one X-Registered/X-Confirmation-No pair on top, in the header’s line ending, body untouched', () => {
  const once = stampMail(Buffer.from(MAIL), '2026112312Notices@bank.exampleAbCdEfGh');
  const twice = stampMail(once, '2026112313Notices@bank.exampleZZZZZZZZ');
  const text = twice.toString();
  assert.equal(text.match(/^X-Registered:/gim)?.length, 1);
  assert.equal(text.match(/^X-Confirmation-No:/gim)?.length, 1);
  assert.ok(
    text.startsWith('X-Registered: Yes\r\nX-Confirmation-No: 2026112313Notices@bank.exampleZZZZZZZZ\r\n'),
  );
  assert.ok(
    twice.subarray(twice.length - 16).equals(Buffer.from(MAIL).subarray(Buffer.from(MAIL).length - 16)),
  );
  assert.equal(
    queryOfMail(twice).signature,
    queryOfMail(Buffer.from(MAIL)).signature,
    'stamps are not signed',
  );
  const lf = stampMail(Buffer.from(MAIL.replace(/\r\n/g, '\n')), 'N');
  assert.ok(lf.toString().startsWith('X-Registered: Yes\nX-Confirmation-No: N\n'));
  const f = mailFacts(twice);
  assert.equal(f.claimsRegistered, true);
  assert.equal(f.confirmationNo, '2026112313Notices@bank.exampleZZZZZZZZ');
});

test('hostile input: random bytes and header soup either parse or fail with a 400, never anything else', () => {
  const headerish = fc
    .array(
      fc.oneof(
        fc.constantFrom(
          'From: ',
          'To: ',
          'Date: ',
          'Subject: ',
          'X-Registered: Yes',
          '\r\n',
          '\n',
          ' ',
          ':',
          '<',
          '>',
          '@',
          ',',
          '"',
          '=?utf-8?B?',
          '?=',
          '\u0000',
        ),
        fc.string({ maxLength: 8 }),
      ),
      { maxLength: 60 },
    )
    .map((a) => Buffer.from(a.join('')));
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)),
        headerish,
      ),
      (raw) => {
        try {
          parseMail(raw);
          queryOfMail(raw);
          stampMail(raw, 'N');
        } catch (e) {
          assert.ok(e instanceof RegistryError && e.status === 400, String(e));
        }
        return true;
      },
    ),
    { numRuns: 1000 },
  );
  assert.throws(() => parseMail(Buffer.alloc(300 * 1024, 0x41)), /header longer than/);
  assert.throws(() => queryOfMail(Buffer.from('From: a@b.c\r\n\r\nbody')), /no recipient/);
  assert.throws(() => queryOfMail(Buffer.from('From: a@b.c\r\nTo: d@e.f\r\n\r\nbody')), /Date/);
});
