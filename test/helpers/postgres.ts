/**
 * A real Debian PostgreSQL for one test (or one benchmark): initdb into a temp dir, the server on
 * 127.0.0.1 at an ephemeral port with its unix socket in the same temp dir, password (SCRAM) auth,
 * torn down with the temp dir afterwards. Never touches the system cluster or its service.
 *
 * As root the server runs as the `postgres` user (it refuses root); the temp dir is handed to it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';
import { requireCapability } from './peers.js';

export interface PostgresServer {
  /** postgres://scangate:…@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly port: number;
  /** Creates an empty database and returns its URL (one cluster, isolated databases). */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** fsync on commit (default false: a test cluster need not survive power loss; benches may want it). */
  fsync?: boolean;
}

/** Newest `/usr/lib/postgresql/N/bin` holding initdb and postgres, or null. */
export function findPostgresBin(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(base, v, 'bin');
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin;
  }
  return null;
}

function runAs(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => child.once('exit', () => r()));
}

/** Starts a private cluster; throws when PostgreSQL is not installed. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const bin = findPostgresBin();
  if (!bin) throw new Error('PostgreSQL not installed (Debian package postgresql)');
  const owner = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'scangate-pg-'));
  const data = join(dir, 'data');
  const password = randomBytes(12).toString('hex');
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (owner) {
    chownSync(dir, owner.uid, owner.gid);
    chownSync(pwfile, owner.uid, owner.gid);
  }
  const ids = owner ? { uid: owner.uid, gid: owner.gid } : {};
  execFileSync(
    join(bin, 'initdb'),
    [
      '-D',
      data,
      '-U',
      'scangate',
      `--pwfile=${pwfile}`,
      '--auth-host=scram-sha-256',
      '--auth-local=trust',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ],
    { ...ids, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir },
  );
  rmSync(pwfile);

  let child: ChildProcess | null = null;
  let port = 0;
  let log = '';
  // The port is free when we look, but another process may take it before the server binds;
  // a bind failure is visible as an early exit, and we try another port.
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    const c = spawn(
      join(bin, 'postgres'),
      [
        '-D',
        data,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        `unix_socket_directories=${dir}`,
        '-c',
        `fsync=${options.fsync ? 'on' : 'off'}`,
        '-c',
        'max_connections=60',
        '-c',
        'shared_buffers=32MB',
      ],
      { ...ids, stdio: ['ignore', 'ignore', 'pipe'], cwd: dir },
    );
    c.stderr?.on('data', (d: Buffer) => {
      if (log.length < 64_000) log += d.toString();
    });
    const ready = await waitReady(port, password, c);
    if (ready) child = c;
    else {
      c.kill('SIGKILL');
      await exited(c);
    }
  }
  if (!child) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start:\n${log}`);
  }
  const server = child;
  const url = `postgres://scangate:${password}@127.0.0.1:${port}/postgres`;
  let stopped = false;
  return {
    url,
    port,
    async createDatabase(name) {
      if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://scangate:${password}@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // SIGINT = "fast" shutdown: roll back open transactions, disconnect clients, stop.
      server.kill('SIGINT');
      const timer = setTimeout(() => server.kill('SIGKILL'), 15_000);
      await exited(server);
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitReady(port: number, password: string, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'scangate',
      password,
      database: 'postgres',
    });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return true;
    } catch {
      await client.end().catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

/**
 * For a test: a private cluster stopped in t.after, or a skip (a failure under CI=true) when the
 * Debian package is missing.
 */
export async function postgresForTest(
  t: TestContext,
  options: StartPostgresOptions = {},
): Promise<PostgresServer | null> {
  if (
    !requireCapability(t, findPostgresBin() !== null, 'PostgreSQL not installed (Debian package postgresql)')
  )
    return null;
  const server = await startPostgres(options);
  t.after(() => server.stop());
  return server;
}
