/**
 * The "message judged → policy" seam (src/protocols/smtp/policy.ts): a MessagePolicy sees every
 * message about to be forwarded with its envelope, content and verdict, may add header fields or
 * refuse it, and is told how every message ended. What it cannot do: turn a refused (infected)
 * message into a delivered one, make the relay answer 250 without the server's 250, or pass a
 * malformed header field.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import type {
  JudgedMessage,
  MessageOutcome,
  MessagePolicy,
  PolicyDecision,
} from '../../src/protocols/smtp/policy.js';
import { validHeaderField } from '../../src/protocols/smtp/policy.js';
import { EICAR, mailWithAttachment } from '../helpers/eicar.js';
import { RawSmtpClient, startSmtpGateway, withoutScangateHeaders } from '../helpers/smtp-gateway.js';
import { type MailServer, startMailServer } from '../helpers/smtp-server.js';

let dir: string;
let engine: Scanner;
const closers: (() => Promise<void>)[] = [];

/** A policy whose next answer the test sets, recording what it was shown and told. */
class ScriptedPolicy implements MessagePolicy {
  readonly name = 'scripted';
  answer: (m: JudgedMessage) => Promise<PolicyDecision> = async () => ({ action: 'accept' });
  readonly seen: { message: JudgedMessage; content: Buffer }[] = [];
  readonly outcomes: { message: JudgedMessage | null; outcome: MessageOutcome }[] = [];
  async judge(m: JudgedMessage): Promise<PolicyDecision> {
    this.seen.push({ message: m, content: await m.content.read(0, m.content.size) });
    return this.answer(m);
  }
  settled(message: JudgedMessage | null, outcome: MessageOutcome): void {
    this.outcomes.push({ message, outcome });
  }
}

async function setup(
  policies: MessagePolicy[],
): Promise<{ server: MailServer; port: number; events: { kind: string }[] }> {
  const server = await startMailServer({ tls: 'none' });
  closers.push(server.close);
  const g = await startSmtpGateway({
    dir,
    scanner: engine,
    listener: { upstream: `127.0.0.1:${server.port}`, tls: { client: 'none', upstream: 'none' } },
    messagePolicies: policies,
  });
  closers.push(g.close);
  return { server, port: g.port, events: g.events.events };
}

async function send(port: number, content: string, rcpts = ['b@example.net']) {
  const c = await RawSmtpClient.connect(port);
  assert.equal((await c.reply())?.code, 220);
  assert.equal((await c.command('EHLO client.example.org'))?.code, 250);
  assert.equal((await c.command('MAIL FROM:<a@example.org> SIZE=100'))?.code, 250);
  for (const r of rcpts) assert.equal((await c.command(`RCPT TO:<${r}>`))?.code, 250);
  assert.equal((await c.command('DATA'))?.code, 354);
  c.write(`${content}.\r\n`);
  const r = await c.reply();
  c.close();
  return r;
}

const SIMPLE = 'Subject: hi\r\n\r\nhello\r\n';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-smtpp-'));
  engine = await createBuiltinScanner();
});

after(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

describe('message policies', { concurrency: false }, () => {
  it('see the envelope, content and verdict, and their header fields arrive after ours', async () => {
    const p = new ScriptedPolicy();
    p.answer = async () => ({ action: 'accept', headers: ['X-Registered: yes', 'X-Confirmation-No: 42'] });
    const { server, port } = await setup([p]);
    const r = await send(port, SIMPLE, ['b@example.net', 'c@example.net']);
    assert.equal(r?.code, 250);
    assert.equal(p.seen.length, 1);
    const m = p.seen[0]!.message;
    assert.equal(m.mailFrom, 'a@example.org');
    assert.deepEqual(m.recipients, ['b@example.net', 'c@example.net']);
    assert.equal(m.verdict.status, 'clean');
    assert.equal(m.clientTls, false);
    assert.equal(p.seen[0]!.content.toString(), SIMPLE);
    assert.equal(server.messages.length, 1);
    const data = server.messages[0]!.data;
    const { headers, rest } = withoutScangateHeaders(data);
    assert.ok(headers.some((h) => h.startsWith('X-Scangate-Scanned: clean')));
    assert.equal(
      rest.toString(),
      `X-Registered: yes\r\nX-Confirmation-No: 42\r\n${SIMPLE}`,
      'policy fields follow the relay’s own, then the original bytes unchanged',
    );
    assert.equal(p.outcomes.length, 1);
    assert.equal(p.outcomes[0]!.outcome.delivered, true);
    assert.equal(p.outcomes[0]!.outcome.decidedBy, 'server');
    assert.equal(p.outcomes[0]!.outcome.reply.code, 250);
  });

  it('a refusal reaches the client, nothing reaches the server, the connection goes on', async () => {
    const p = new ScriptedPolicy();
    p.answer = async () => ({
      action: 'refuse',
      reply: { code: 550, lines: ['5.7.1 Sender not registered'] },
      reason: 'unregistered',
    });
    const { server, port } = await setup([p]);
    const c = await RawSmtpClient.connect(port);
    await c.reply();
    await c.command('EHLO client.example.org');
    for (const expected of [550, 250]) {
      assert.equal((await c.command('MAIL FROM:<a@example.org>'))?.code, 250);
      assert.equal((await c.command('RCPT TO:<b@example.net>'))?.code, 250);
      assert.equal((await c.command('DATA'))?.code, 354);
      c.write(`${SIMPLE}.\r\n`);
      const r = await c.reply();
      assert.equal(r?.code, expected);
      if (expected === 550) assert.equal(r?.text, '5.7.1 Sender not registered');
      assert.equal(server.messages.length, expected === 550 ? 0 : 1);
      // Accepted on the second round, on the same connection: the relay reset the server's transaction.
      p.answer = async () => ({ action: 'accept' });
    }
    c.close();
    assert.equal(p.outcomes[0]!.outcome.decidedBy, 'policy');
    assert.equal(p.outcomes[0]!.outcome.delivered, false);
  });

  it('a policy that throws, asks for a bad header or "refuses" with 250 gives 451 and delivers nothing', async () => {
    const p = new ScriptedPolicy();
    const { server, port } = await setup([p]);
    const answers: ((m: JudgedMessage) => Promise<PolicyDecision>)[] = [
      async () => {
        throw new Error('registry unreachable');
      },
      async () => ({ action: 'accept', headers: ['X-Evil: a\r\nBcc: everyone@example.org'] }),
      async () => ({ action: 'refuse', reply: { code: 250, lines: ['fake ok'] }, reason: 'x' }),
    ];
    for (const a of answers) {
      p.answer = a;
      const r = await send(port, SIMPLE);
      assert.equal(r?.code, 451);
      assert.match(r?.text ?? '', /^4\.3\.0/);
    }
    assert.equal(server.messages.length, 0);
    assert.ok(p.outcomes.every((o) => o.outcome.decidedBy === 'local' && !o.outcome.delivered));
  });

  it('never sees an infected message refused by the scanner, but hears how it ended', async () => {
    const p = new ScriptedPolicy();
    const { server, port } = await setup([p]);
    const r = await send(port, mailWithAttachment(EICAR, 'eicar.com').toString('latin1'));
    assert.equal(r?.code, 554);
    assert.equal(p.seen.length, 0);
    assert.equal(server.messages.length, 0);
    assert.equal(p.outcomes.length, 1);
    assert.equal(p.outcomes[0]!.message, null);
    assert.equal(p.outcomes[0]!.outcome.decidedBy, 'scanner');
    assert.equal(p.outcomes[0]!.outcome.verdict?.status, 'infected');
  });

  it('the first refusal wins; later policies are not asked', async () => {
    const first = new ScriptedPolicy();
    first.answer = async () => ({
      action: 'refuse',
      reply: { code: 450, lines: ['4.7.1 later'] },
      reason: 'x',
    });
    const second = new ScriptedPolicy();
    const { server, port } = await setup([first, second]);
    assert.equal((await send(port, SIMPLE))?.code, 450);
    assert.equal(second.seen.length, 0);
    assert.equal(second.outcomes.length, 1, 'every policy hears the outcome');
    assert.equal(server.messages.length, 0);
  });
});

describe('validHeaderField', () => {
  it('accepts fields and folded fields, refuses injected lines and names with spaces', () => {
    assert.ok(validHeaderField('X-Registered: yes'));
    assert.ok(validHeaderField('X-Long: a\r\n b'));
    assert.ok(!validHeaderField('X-Evil: a\r\nBcc: x'));
    assert.ok(!validHeaderField('X Evil: a'));
    assert.ok(!validHeaderField('X-Evil: a\n'));
    assert.ok(!validHeaderField('X-Evil: a\r\n'));
    assert.ok(!validHeaderField('no colon'));
  });
});
