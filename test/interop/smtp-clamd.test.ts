/**
 * Issue 4, done-when 3 with a real scanner: the SMTP gateway on the engine's clamd backend
 * (`engine.backend: clamd`) in front of Debian's clamd, started by the test on a generated database.
 * clamd killed → the message gets 451 4.7.1 and nothing reaches the server; clamd restarted → the
 * client's retry of the same message is delivered, once. Infected mail is refused by clamd's verdict.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { configSchema } from '../../src/config/schema.js';
import { createScanner } from '../../src/engine/index.js';
import type { Scanner } from '../../src/engine/types.js';
import { type DebianClamd, startDebianClamd } from '../helpers/clamd-daemon.js';
import { EICAR, mailWithAttachment } from '../helpers/eicar.js';
import { peer } from '../helpers/peers.js';
import { RawSmtpClient, startSmtpGateway, withoutScangateHeaders } from '../helpers/smtp-gateway.js';
import { type MailServer, startMailServer } from '../helpers/smtp-server.js';

let dir: string;
let db: string;
let clamd: DebianClamd | null = null;
let scanner: Scanner | null = null;
let server: MailServer | null = null;
let gatewayClose: (() => Promise<void>) | null = null;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-smtp-clamd-'));
  db = join(dir, 'db');
  mkdirSync(db);
  writeFileSync(join(db, 'test.hdb'), '44d88612fea8a8f36de82e1278abb02f:68:Eicar-Signature\n');
});

after(async () => {
  await gatewayClose?.().catch(() => {});
  await server?.close().catch(() => {});
  await scanner?.close?.().catch(() => {});
  clamd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** One message over a fresh connection, as a client retrying later would; returns the final reply. */
async function send(port: number, content: Buffer) {
  const c = await RawSmtpClient.connect(port);
  try {
    assert.equal((await c.reply())?.code, 220);
    assert.equal((await c.command('EHLO client.example.org'))?.code, 250);
    assert.equal((await c.command('MAIL FROM:<sender@example.org>'))?.code, 250);
    assert.equal((await c.command('RCPT TO:<rcpt@example.net>'))?.code, 250);
    assert.equal((await c.command('DATA'))?.code, 354);
    c.write(Buffer.concat([content, Buffer.from('.\r\n')]));
    return await c.reply(60_000);
  } finally {
    c.close();
  }
}

async function exited(d: DebianClamd): Promise<void> {
  if (d.proc.exitCode !== null || d.proc.signalCode !== null) return;
  await new Promise((r) => d.proc.once('exit', r));
}

it('clamd down: 451 4.7.1 and nothing delivered; clamd back: the retry is delivered once', async (t) => {
  const clamdBin = peer(t, 'clamd', 'clamav-daemon');
  if (!clamdBin) return;
  clamd = await startDebianClamd(clamdBin, join(dir, 'clamd'), db);
  const config = configSchema.parse({
    dataDir: join(dir, 'data'),
    engine: { backend: 'clamd', clamd: { address: clamd.sock, connectTimeout: 2 } },
  });
  scanner = await createScanner(config.engine, { dataDir: config.dataDir });
  assert.match(scanner.version().engine, /ClamAV/);
  server = await startMailServer({ tls: 'none' });
  const g = await startSmtpGateway({
    dir: join(dir, 'gw'),
    scanner,
    engine: config.engine,
    listener: { upstream: `127.0.0.1:${server.port}`, tls: { client: 'none', upstream: 'none' } },
  });
  gatewayClose = g.close;

  const clean = mailWithAttachment(Buffer.from('quarterly figures\n'), 'figures.txt');
  const infected = mailWithAttachment(EICAR, 'invoice.com');

  // Up: clamd's verdicts decide.
  assert.equal((await send(g.port, clean))?.code, 250);
  const refused = await send(g.port, infected);
  assert.equal(refused?.code, 554);
  assert.match(refused?.text ?? '', /Eicar-Signature/);
  assert.equal(server.messages.length, 1);

  // Down: killed mid-life, its socket left behind.
  clamd.stop();
  await exited(clamd);
  const retryLater = mailWithAttachment(Buffer.from('sent while the scanner was down\n'), 'later.txt');
  const down = await send(g.port, retryLater);
  assert.equal(down?.code, 451);
  assert.match(down?.text ?? '', /^4\.7\.1 /);
  assert.equal(server.messages.length, 1, 'nothing delivered while the scanner is down');
  assert.ok(g.events.events.some((e) => e.kind === 'verdict' && e.action === 'blocked'));

  // Back: the client's retry of the same message goes through, exactly once.
  clamd = await startDebianClamd(clamdBin, join(dir, 'clamd'), db);
  const retry = await send(g.port, retryLater);
  assert.equal(retry?.code, 250);
  assert.equal(server.messages.length, 2);
  const delivered = withoutScangateHeaders(server.messages[1]!.data);
  assert.ok(delivered.rest.equals(retryLater), 'delivered byte-identical after the X-Scangate-* fields');
  assert.ok(
    delivered.headers.some((h) => /^X-Scangate-Scanned: clean; engine="clamd \(ClamAV /.test(h)),
    delivered.headers.join('\n'),
  );
  // And clamd still judges after its restart.
  assert.equal((await send(g.port, infected))?.code, 554);
  assert.equal(server.messages.length, 2);
});
