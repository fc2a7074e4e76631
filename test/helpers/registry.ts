/**
 * The registry for a test: started in-process on 127.0.0.1:0 over SQLite (temp dataDir) or a private
 * PostgreSQL, mailing through an in-test smtp-server whose messages the test reads; plus helpers
 * to pull the confirmation link out of a mail and drive the confirmation page like a browser.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pino from 'pino';
import { configSchema } from '../../src/config/schema.js';
import { RegistryClient } from '../../src/registry/client.js';
import { type RunningRegistry, startRegistry } from '../../src/registry/index.js';
import { postgresForTest } from './postgres.js';
import { type MailServer, startMailServer } from './smtp-server.js';

export type Engine = 'sqlite' | 'postgres';

export interface TestRegistry {
  registry: RunningRegistry;
  mail: MailServer;
  dataDir: string;
  /** Moves the registry's clock (reminders, expiry) without waiting. */
  advance(ms: number): void;
  /** Every log line the registry wrote (debug level and up), for "no secret in logs" checks. */
  logs: string[];
}

export async function registryForTest(
  t: TestContext,
  engine: Engine,
  overrides: Record<string, unknown> = {},
): Promise<TestRegistry | null> {
  const dataDir = mkdtempSync(join(tmpdir(), 'scangate-registry-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  let database = 'sqlite:registry.db';
  if (engine === 'postgres') {
    const pg = await postgresForTest(t);
    if (!pg) return null;
    database = await pg.createDatabase('registry');
  }
  const mail = await startMailServer({ tls: 'none' });
  t.after(() => mail.close());
  const config = configSchema.parse({
    dataDir,
    registry: {
      listen: '127.0.0.1:0',
      database,
      mail: { smtp: `127.0.0.1:${mail.port}`, from: 'registry@scangate.test', tls: 'none' },
      ...overrides,
    },
  }).registry;
  if (!config) throw new Error('registry config');
  let offset = 0;
  const logs: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(line) });
  const registry = await startRegistry(config, dataDir, logger, {
    now: () => Date.now() + offset,
  });
  t.after(() => registry.close());
  return {
    registry,
    mail,
    dataDir,
    logs,
    advance: (ms) => {
      offset += ms;
    },
  };
}

/** Waits (bounded) until the mail server has received `count` messages. */
export async function waitForMail(mail: MailServer, count: number, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (mail.messages.length < count) {
    if (Date.now() > deadline) throw new Error(`expected ${count} mails, got ${mail.messages.length}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A registry mail's text with quoted-printable undone (nodemailer wraps long lines). */
export function mailText(data: Buffer): string {
  return data
    .toString('utf8')
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
}

/** The confirmation link of a registry mail. */
export function confirmationLink(data: Buffer): URL {
  const text = mailText(data);
  const m = /(https?:\/\/\S+\/confirm\?ref=[A-Za-z0-9]+&code=[A-Z0-9]+)/.exec(text);
  if (!m) throw new Error('no confirmation link in the mail');
  return new URL(m[1] as string);
}

/** Opens the link and submits the page's form, keeping its cookie, as a browser does. */
export async function confirmByLink(link: URL): Promise<{ status: number; html: string }> {
  const page = await fetch(link);
  const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const html = await page.text();
  const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1] ?? '';
  const res = await fetch(new URL('/confirm', link), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
    body: new URLSearchParams({ csrf: field('csrf'), ref: field('ref'), code: field('code') }),
  });
  return { status: res.status, html: await res.text() };
}

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'scangate.js');

/** Runs the CLI without blocking this process (which serves the registry the CLI talks to). */
export function scangateCli(
  args: string[],
  stdin?: string,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, SCANGATE_FROM_SOURCE: '1' },
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: 120_000,
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

/**
 * An organisation enrolled the way an operator does it before configuring the gateway: account,
 * address confirmed through the mailed link, Ed25519 key uploaded; token and private key written
 * (0600) to `keyDir`/org.token and org.pem. Uses a registry of its own over `dataDir`'s SQLite
 * database, closed again; the mail server's inbox is emptied afterwards.
 */
export async function enrolOrganisation(o: {
  dataDir: string;
  keyDir: string;
  mail: MailServer;
  address: string;
}): Promise<{ tokenFile: string; keyFile: string }> {
  const config = configSchema.parse({
    dataDir: o.dataDir,
    registry: {
      listen: '127.0.0.1:0',
      mail: { smtp: `127.0.0.1:${o.mail.port}`, from: 'registry@scangate.test', tls: 'none' },
    },
  }).registry;
  if (!config) throw new Error('registry config');
  const reg = await startRegistry(config, o.dataDir, pino({ level: 'silent' }));
  const tokenFile = join(o.keyDir, 'org.token');
  const keyFile = join(o.keyDir, 'org.pem');
  try {
    const { token } = await new RegistryClient(reg.url).createAccount('Example Bank');
    const api = new RegistryClient(reg.url, token);
    const before = o.mail.messages.length;
    await api.requestAddress(o.address);
    await waitForMail(o.mail, before + 1);
    const done = await confirmByLink(confirmationLink(o.mail.messages[before]?.data ?? Buffer.alloc(0)));
    if (done.status !== 200) throw new Error(`confirmation failed: ${done.status}`);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    await api.addKey(publicKey.export({ format: 'der', type: 'spki' }).toString('base64'));
    writeFileSync(tokenFile, token, { mode: 0o600 });
    writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    await waitForMail(o.mail, before + 2); // "your address is registered"
  } finally {
    await reg.close();
  }
  o.mail.messages.length = 0;
  return { tokenFile, keyFile };
}
