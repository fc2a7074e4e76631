/**
 * Issue 4, "done when" 5: 1,000 messages over 10 parallel connections (nodemailer's pool, STARTTLS on
 * the client leg) through the gateway to a real SMTP server; every clean one delivered exactly once,
 * every infected one rejected, counted on the server side.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import nodemailer from 'nodemailer';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { EICAR } from '../helpers/eicar.js';
import { type GatewayUnderTest, startSmtpGateway } from '../helpers/smtp-gateway.js';
import { type MailServer, startMailServer } from '../helpers/smtp-server.js';

const TOTAL = 1000;
const INFECTED_EVERY = 10;

let dir: string;
let scanner: Scanner;
let server: MailServer;
let gw: GatewayUnderTest;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-smtpl-'));
  scanner = await createBuiltinScanner();
  server = await startMailServer({ tls: 'none' });
  gw = await startSmtpGateway({
    dir,
    scanner,
    listener: { upstream: `127.0.0.1:${server.port}`, tls: { client: 'starttls', upstream: 'none' } },
  });
});

after(async () => {
  await gw.close();
  await server.close();
  await scanner.close?.();
  rmSync(dir, { recursive: true, force: true });
});

it(
  `${TOTAL} messages over 10 connections: clean ones delivered exactly once, infected ones rejected`,
  { timeout: 240_000 },
  async () => {
    const transport = nodemailer.createTransport({
      pool: true,
      maxConnections: 10,
      maxMessages: Number.POSITIVE_INFINITY,
      host: '127.0.0.1',
      port: gw.port,
      secure: false,
      requireTLS: true,
      tls: {
        ca: readFileSync(gw.caFile, 'utf8'),
        servername: '127.0.0.1',
        checkServerIdentity: () => undefined,
      },
    });
    const started = Date.now();
    const results = await Promise.allSettled(
      Array.from({ length: TOTAL }, (_, i) =>
        transport.sendMail({
          from: 'load@example.org',
          to: 'rcpt@example.net',
          subject: `message ${i}`,
          messageId: `<load-${i}@example.org>`,
          text: `message number ${i}\n`,
          attachments: [
            i % INFECTED_EVERY === 0
              ? { filename: `payload-${i}.com`, content: EICAR }
              : { filename: `data-${i}.bin`, content: Buffer.alloc(2048, i & 0xff) },
          ],
        }),
      ),
    );
    transport.close();
    const seconds = (Date.now() - started) / 1000;

    const infected = TOTAL / INFECTED_EVERY;
    const rejected = results.filter((r) => r.status === 'rejected');
    assert.equal(
      rejected.length,
      infected,
      String((rejected[0] as PromiseRejectedResult | undefined)?.reason),
    );
    for (const r of rejected) assert.equal((r.reason as { responseCode?: number }).responseCode, 554);
    const rejectedIds = new Set(results.flatMap((r, i) => (r.status === 'rejected' ? [i] : [])));
    assert.ok(
      [...rejectedIds].every((i) => i % INFECTED_EVERY === 0),
      'only the infected ones were rejected',
    );

    // Server side: exactly the clean ones, each once.
    const ids = server.messages.map((m) => /Message-ID: <load-(\d+)@/i.exec(m.data.toString('latin1'))?.[1]);
    assert.equal(server.messages.length, TOTAL - infected);
    assert.equal(new Set(ids).size, TOTAL - infected, 'no duplicates');
    assert.ok(
      ids.every((id) => id !== undefined && Number(id) % INFECTED_EVERY !== 0),
      'no infected message delivered',
    );
    assert.equal(
      gw.events.events.filter((e) => e.kind === 'verdict' && e.action === 'rejected').length,
      infected,
    );
    // Not a benchmark (bench/smtp.ts is), but a floor that catches a pathological slowdown.
    assert.ok(seconds < 200, `${TOTAL} messages took ${seconds.toFixed(1)} s`);
  },
);
