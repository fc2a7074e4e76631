/**
 * Issue 9, "done when" 1: HTTPS and SMTP traffic with some infected objects goes through one gateway;
 * /metrics counts exactly what the test sent (connections per listener, wire bytes both ways for
 * the plaintext SMTP leg, objects scanned, verdicts, TLS handshakes), the event store answers by
 * listener, signature and client, and the dashboard in headless Chromium shows the events — the
 * one that arrives while the page is open comes over server-sent events. Screenshot:
 * test-output/admin-dashboard.png.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { resolveConfig } from '../../src/config/load.js';
import { type Gateway, startGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/logger.js';
import { launchBrowser, screenshotPath } from '../helpers/browser.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { RawSmtpClient } from '../helpers/ops-smtp-client.js';
import { peer } from '../helpers/peers.js';
import { type MailServer, startMailServer } from '../helpers/smtp-server.js';
import { createTestPki, curl, type Origin, splitHead, startOrigin } from './http-origin.js';

const HTTPS_CLEAN = 4;
const HTTPS_INFECTED = 2;
const MAIL_CLEAN = 3;
const MAIL_INFECTED = 2;

let dir: string;
let origin: Origin;
let mail: MailServer;
let gw: Gateway;
let admin: string;
let token: string;

/** `name{labels} value` lines of the Prometheus text format, summed over matching label sets. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? ([-+0-9.eE]+|NaN)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const set = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => set[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function get(path: string): Promise<Response> {
  return fetch(`${admin}${path}`, { headers: { authorization: `Bearer ${token}` } });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scangate-admin-'));
  const pki = await createTestPki(dir);
  origin = await startOrigin({ tls: await pki.server(['localhost', '127.0.0.1']) });
  mail = await startMailServer({ tls: 'none' });
  const config = resolveConfig({
    dataDir: join(dir, 'data'),
    log: { level: 'silent' },
    tls: { upstream: { ca: [pki.caFile] } },
    listeners: [
      { name: 'web', protocol: 'http', listen: '127.0.0.1:0' },
      {
        name: 'mail',
        protocol: 'smtp',
        listen: '127.0.0.1:0',
        upstream: `127.0.0.1:${mail.port}`,
        tls: { client: 'none', upstream: 'none' },
      },
    ],
    admin: { listen: '127.0.0.1:0' },
  });
  gw = await startGateway(config, silentLogger);
  admin = `http://127.0.0.1:${gw.admin!.address.port}`;
  token = gw.adminToken!.value;
});

after(async () => {
  await gw?.close(1000);
  await origin?.close();
  await mail?.close();
  rmSync(dir, { recursive: true, force: true });
});

function portOf(name: string): number {
  return (gw.services.find((s) => s.name === name)!.address as AddressInfo).port;
}

async function download(curlBin: string, path: string): Promise<number> {
  const r = await curl(curlBin, [
    '-D',
    '-',
    '-x',
    `http://127.0.0.1:${portOf('web')}`,
    '--cacert',
    gw.ca.files.cert,
    `https://localhost:${origin.port}${path}`,
  ]);
  return splitHead(r.stdout).status;
}

/** One SMTP session, one message; returns the DATA reply and the socket's byte counts. */
async function sendMail(n: number, infected: boolean) {
  const c = await RawSmtpClient.connect(portOf('mail'));
  assert.equal((await c.reply()).code, 220);
  assert.equal((await c.command('EHLO client.example')).code, 250);
  assert.equal((await c.command('MAIL FROM:<sender@example.org>')).code, 250);
  assert.equal((await c.command('RCPT TO:<rcpt@example.net>')).code, 250);
  assert.equal((await c.command('DATA')).code, 354);
  const body = infected ? EICAR.toString('latin1') : `clean message ${n}`;
  c.write(`Subject: message ${n}\r\nMessage-ID: <m${n}@example.org>\r\n\r\n${body}\r\n.\r\n`);
  const data = await c.reply();
  assert.equal((await c.command('QUIT')).code, 221);
  await new Promise((r) => c.socket.once('close', r));
  return { code: data.code, sent: c.socket.bytesWritten, received: c.socket.bytesRead };
}

it('metrics count exactly the HTTPS and SMTP traffic sent; events are stored and queryable', async (t) => {
  const curlBin = peer(t, 'curl');
  if (!curlBin) return;
  const statuses: number[] = [];
  for (let i = 0; i < HTTPS_CLEAN; i++) statuses.push(await download(curlBin, '/clean.txt'));
  for (let i = 0; i < HTTPS_INFECTED; i++) statuses.push(await download(curlBin, '/eicar.com'));
  assert.deepEqual(statuses, [...Array(HTTPS_CLEAN).fill(200), ...Array(HTTPS_INFECTED).fill(403)]);

  let sent = 0;
  let received = 0;
  const codes: number[] = [];
  for (let i = 0; i < MAIL_CLEAN + MAIL_INFECTED; i++) {
    const r = await sendMail(i, i >= MAIL_CLEAN);
    codes.push(r.code);
    sent += r.sent;
    received += r.received;
  }
  assert.deepEqual(codes, [...Array(MAIL_CLEAN).fill(250), ...Array(MAIL_INFECTED).fill(554)]);
  assert.equal(mail.messages.length, MAIL_CLEAN);
  await gw.store!.flush();

  const text = await (await get('/metrics')).text();
  const web = { listener: 'web', protocol: 'http' };
  const smtp = { listener: 'mail', protocol: 'smtp' };
  assert.equal(metric(text, 'scangate_connections_total', web), HTTPS_CLEAN + HTTPS_INFECTED);
  assert.equal(metric(text, 'scangate_connections_total', smtp), MAIL_CLEAN + MAIL_INFECTED);
  assert.equal(metric(text, 'scangate_connections_open'), 0);
  // Plaintext SMTP: the wire bytes are exactly what our client wrote and read.
  assert.equal(metric(text, 'scangate_client_bytes_received_total', smtp), sent);
  assert.equal(metric(text, 'scangate_client_bytes_sent_total', smtp), received);
  assert.ok(metric(text, 'scangate_client_bytes_sent_total', web) > 0);
  // One object per HTTPS response, one per message.
  const objects = HTTPS_CLEAN + HTTPS_INFECTED + MAIL_CLEAN + MAIL_INFECTED;
  assert.equal(metric(text, 'scangate_objects_scanned_total'), objects);
  assert.equal(
    metric(text, 'scangate_verdicts_total', { result: 'infected' }),
    HTTPS_INFECTED + MAIL_INFECTED,
  );
  assert.equal(metric(text, 'scangate_verdicts_total', { result: 'clean' }), HTTPS_CLEAN + MAIL_CLEAN);
  assert.equal(metric(text, 'scangate_scan_duration_seconds_count'), objects);
  // Every HTTPS connection: one handshake with the client, one with the origin.
  assert.equal(
    metric(text, 'scangate_tls_handshakes_total', { listener: 'web', side: 'client' }),
    HTTPS_CLEAN + HTTPS_INFECTED,
  );
  assert.equal(
    metric(text, 'scangate_tls_handshakes_total', { listener: 'web', side: 'upstream' }),
    HTTPS_CLEAN + HTTPS_INFECTED,
  );
  assert.equal(metric(text, 'scangate_tls_handshake_failures_total'), 0);
  assert.equal(metric(text, 'scangate_events_total', { kind: 'verdict' }), HTTPS_INFECTED + MAIL_INFECTED);
  // Identical clean bodies are judged once and then answered from the cache.
  assert.ok(metric(text, 'scangate_verdict_cache_hits_total') >= HTTPS_CLEAN - 1);
  assert.ok(metric(text, 'scangate_verdict_cache_hit_ratio') > 0);
  assert.equal(metric(text, 'scangate_upstream_failures_total'), 0);
  assert.ok(text.includes('scangate_spool_bytes'));

  const q = async (query: string) =>
    (
      (await (await get(`/api/events?${query}`)).json()) as {
        events: { listener: string; signature?: string; client?: string }[];
      }
    ).events;
  const byWeb = await q('listener=web');
  assert.equal(byWeb.length, HTTPS_INFECTED);
  assert.ok(byWeb.every((e) => e.signature === EICAR_NAME));
  assert.equal((await q('listener=mail')).length, MAIL_INFECTED);
  assert.equal((await q(`signature=${EICAR_NAME}`)).length, HTTPS_INFECTED + MAIL_INFECTED);
  assert.equal((await q('client=127.0.0.1')).length, HTTPS_INFECTED + MAIL_INFECTED);
  assert.equal((await q('client=192.0.2.77')).length, 0);
  assert.equal(
    (await q(`since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).length,
    0,
  );
  assert.equal((await get('/api/events?since=yesterday')).status, 400);

  // The on-access agent's quarantine (another process) shows up once it holds something.
  const overview = async () =>
    (await (await get('/api/overview')).json()) as { summaries: Record<string, Record<string, number>> };
  assert.equal((await overview()).summaries.quarantine, undefined);
  mkdirSync(join(dir, 'data', 'quarantine'), { recursive: true });
  writeFileSync(join(dir, 'data', 'quarantine', '20260101T000000Z-0123456789ab.bin'), EICAR);
  assert.deepEqual((await overview()).summaries.quarantine, { files: 1, bytes: EICAR.length });
});

it(
  'the dashboard shows counters, listeners and events, and a new event arrives live',
  { timeout: 90_000 },
  async (t) => {
    const curlBin = peer(t, 'curl');
    const b = await launchBrowser(t);
    if (!b || !curlBin) return;
    try {
      const page = await b.browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${admin}/?token=${encodeURIComponent(token)}`);
      assert.equal(new URL(page.url()).search, '', 'the token leaves the address bar');
      // Locators rather than page functions: the page's CSP forbids eval, and rightly so.
      const rows = page.locator('#events tbody tr');
      await rows.nth(3).waitFor();
      await page.locator('#live', { hasText: /^live$/ }).waitFor();
      const listeners = await page.$$eval('#listeners tbody tr', (rows) =>
        rows.map((r) => r.getAttribute('data-listener')),
      );
      assert.deepEqual(listeners.sort(), ['mail', 'web']);
      const before = await page.$$eval('#events tbody tr', (rows) => rows.length);
      assert.equal(await download(curlBin, '/eicar.com?live'), 403);
      await rows.nth(before).waitFor();
      const top = await page.$eval('#events tbody tr', (r) => r.textContent ?? '');
      assert.match(top, /eicar\.com\?live/);
      assert.match(top, new RegExp(EICAR_NAME));
      const infected = page
        .locator('#counters .card')
        .filter({ has: page.locator('.k', { hasText: /^infected$/ }) })
        .locator('.v');
      for (let i = 0; i < 50 && Number(await infected.textContent()) < 5; i++)
        await new Promise((r) => setTimeout(r, 200));
      assert.equal(Number(await infected.textContent()), 5);
      await page.screenshot({ path: screenshotPath('admin-dashboard'), fullPage: true });
    } finally {
      await b.close();
    }
  },
);
