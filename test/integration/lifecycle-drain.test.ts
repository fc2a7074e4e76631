/**
 * Issue 9, "done when" 3: SIGTERM to the real CLI process while 100 SMTP sessions are in the middle
 * of DATA. Every message either completes (250, and then the mail server really has it) or gets a
 * 4xx — none is accepted and lost; sessions between transactions get 421; new connections are
 * refused; the process exits 0 before the drain deadline.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type CliProcess, freePort, refused, startCli, writeConfig } from '../helpers/ops-cli.js';
import { RawSmtpClient } from '../helpers/ops-smtp-client.js';
import { type MailServer, startMailServer } from '../helpers/smtp-server.js';

const IN_FLIGHT = 100;
const IDLE = 5;
const DRAIN_SECONDS = 30;

let dir: string;
let mail: MailServer;
let cli: CliProcess | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-drain-'));
  mail = await startMailServer({ tls: 'none' });
});

after(async () => {
  cli?.kill();
  await mail?.close();
  rmSync(dir, { recursive: true, force: true });
});

it(
  `SIGTERM during ${IN_FLIGHT} SMTP sessions: each message completes or gets 4xx, exit 0 in time`,
  { timeout: 120_000 },
  async () => {
    const port = await freePort();
    const config = writeConfig(dir, [
      `dataDir: ${join(dir, 'data')}`,
      'log: { level: info }',
      `listeners: [{ name: mail, protocol: smtp, listen: 127.0.0.1:${port}, upstream: 127.0.0.1:${mail.port}, tls: { client: none, upstream: none }, maxConnections: 1000 }]`,
      'admin: null',
      'events: null',
      `drain: { timeout: ${DRAIN_SECONDS} }`,
    ]);
    cli = startCli(config);
    await cli.waitFor(/mail \(smtp\) listening on/);

    const open = async (n: number) => {
      const c = await RawSmtpClient.connect(port);
      assert.equal((await c.reply()).code, 220, `session ${n} greeting`);
      assert.equal((await c.command(`EHLO client${n}.example`)).code, 250);
      return c;
    };
    const idle = await Promise.all(Array.from({ length: IDLE }, (_, n) => open(1000 + n)));
    const clients = await Promise.all(
      Array.from({ length: IN_FLIGHT }, async (_, n) => {
        const c = await open(n);
        assert.equal((await c.command(`MAIL FROM:<sender${n}@example.org>`)).code, 250);
        assert.equal((await c.command('RCPT TO:<rcpt@example.net>')).code, 250);
        assert.equal((await c.command('DATA')).code, 354);
        // Half the message now, the rest after SIGTERM.
        c.write(
          `Subject: drain ${n}\r\nMessage-ID: <drain-${n}@example.org>\r\n\r\nfirst half of message ${n}\r\n`,
        );
        return c;
      }),
    );

    const termAt = Date.now();
    cli.child.kill('SIGTERM');
    await cli.waitFor(/draining/);
    // Sessions between transactions are told at once.
    for (const c of idle) assert.equal((await c.reply()).code, 421);
    // The listener no longer accepts.
    let closed = false;
    for (let i = 0; i < 100 && !closed; i++) {
      closed = await refused(port);
      if (!closed) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(closed, 'new connections are refused while draining');

    const outcomes = await Promise.all(
      clients.map(async (c, n) => {
        c.write(`second half of message ${n}\r\n.\r\n`);
        const data = await c.reply();
        const next = await c.command('MAIL FROM:<another@example.org>');
        c.close();
        return { n, data: data.code, next: next.code };
      }),
    );
    const exit = await cli.exited;
    assert.equal(exit.code, 0, 'exit status 0');
    assert.ok(exit.at - termAt < DRAIN_SECONDS * 1000, 'exited before the drain deadline');

    const delivered = new Set(
      mail.messages.map((m) => /Message-ID: <drain-(\d+)@/.exec(m.data.toString('latin1'))?.[1]),
    );
    for (const o of outcomes) {
      assert.ok(o.data === 250 || (o.data >= 400 && o.data < 500), `message ${o.n}: DATA answered ${o.data}`);
      if (o.data === 250) assert.ok(delivered.has(String(o.n)), `message ${o.n} accepted and delivered`);
      // After its transaction the session is closed with 421 (or already gone).
      assert.ok(o.next === 421 || o.next === 0, `message ${o.n}: next command answered ${o.next}`);
    }
    assert.equal(
      mail.messages.length,
      outcomes.filter((o) => o.data === 250).length,
      'nothing delivered twice or unannounced',
    );
    assert.ok(
      outcomes.some((o) => o.data === 250),
      'in-flight messages complete during the drain',
    );
  },
);
