/**
 * Registry benchmark (issue 7, done-when 6), one run, loopback, the registry in its own process:
 *   verifications/s: POST /api/v1/verify with the fields of registered messages (confirmation
 *     number given, verdict authentic), CONCURRENCY requests in flight over keep-alive connections;
 *   registrations/s: POST /api/v1/messages with a fresh signature and Ed25519 proof each;
 * over SQLite (file in a temp dataDir, WAL) and over a private PostgreSQL (fsync on), plus the
 * peer for scale: a bare node:http server answering the same requests with a constant JSON body
 * (the HTTP ceiling of this client on this machine). Each figure is the median of ROUNDS rounds of
 * SECONDS each. Bar: ≥ 2,000 verifications/s on SQLite. Results: bench/results/registry.json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { makeProof } from '../src/registry/keys.js';
import { messageSignature } from '../src/registry/signature.js';
import { startPostgres } from '../test/helpers/postgres.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_REGISTRY_CONCURRENCY ?? 32);
const PRELOAD = Number(process.env.BENCH_REGISTRY_PRELOAD ?? 2000);
/** Upper bound on requests per round, whatever the speed. */
const MAX_REQUESTS = 2_000_000;
const BAR_VERIFY_SQLITE = 2000;

interface Setup {
  url: string;
  token: string;
  sender: string;
  privateKey: string;
  messages: { from: string; to: string; date: string; signature: string; confirmationNo: string }[];
}

const children: ChildProcess[] = [];

async function startServer(database: string, dataDir: string): Promise<Setup> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(import.meta.dirname, 'lib', 'registry-server.ts'),
      database,
      dataDir,
      String(PRELOAD),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  return JSON.parse(await firstLine(child)) as Setup;
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.once('line', (l) => {
      rl.close();
      resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`${child.spawnargs.slice(-3).join(' ')} exited ${code}`)));
  });
}

async function stopChildren(): Promise<void> {
  await Promise.all(
    children.splice(0).map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null) return r();
          c.once('exit', () => r());
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 10_000).unref();
        }),
    ),
  );
}

/** Runs `next()`-built POSTs with CONCURRENCY in flight for SECONDS; returns completed requests/s. */
async function load(
  base: string,
  path: string,
  next: (i: number) => { body: string; token?: string },
  expect: number,
): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const url = new URL(path, base);
  const deadline = Date.now() + SECONDS * 1000;
  let issued = 0;
  let done = 0;
  let failures = 0;
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const { body, token } = next(i);
      const req = request(
        url,
        {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === expect) done++;
            else failures++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        failures++;
        resolve();
      });
      req.end(body);
    });
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < deadline && issued < MAX_REQUESTS) await one(issued++);
    }),
  );
  const elapsed = (Date.now() - started) / 1000;
  agent.destroy();
  if (failures > 0) throw new Error(`${path}: ${failures} requests did not answer ${expect}`);
  return done / elapsed;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function measure(setup: Setup, dateBase: number) {
  const key = createPrivateKey(setup.privateKey);
  const verify = (i: number) => {
    const m = setup.messages[i % setup.messages.length] as Setup['messages'][number];
    return { body: JSON.stringify(m) };
  };
  let serial = 0;
  const register = () => {
    // A new recipient per registration keeps every one unique (no 409s).
    const m = { from: setup.sender, to: `r${dateBase}-${serial++}@mail.example`, date: '20261124' };
    const signature = messageSignature({ ...m, content: randomBytes(16).toString('hex') });
    return {
      body: JSON.stringify({ ...m, signature, proof: makeProof(key, signature).toString('base64') }),
      token: setup.token,
    };
  };
  const v: number[] = [];
  const r: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    v.push(await load(setup.url, '/api/v1/verify', verify, 200));
    r.push(await load(setup.url, '/api/v1/messages', register, 201));
  }
  return { verify: median(v), register: median(r), verifyRounds: v, registerRounds: r };
}

/** The peer: a bare node:http server in its own process answering every request with a constant body. */
const PEER_SERVER = `
const http = require('node:http');
const body = Buffer.from(JSON.stringify({ verdict: 'authentic', enrolled: true, reason: 'constant' }));
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: 'http://127.0.0.1:' + server.address().port })));
process.on('SIGTERM', () => process.exit(0));
`;

async function baseline(): Promise<number> {
  const child = spawn(process.execPath, ['-e', PEER_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const { url } = JSON.parse(await firstLine(child)) as { url: string };
  const q = JSON.stringify({
    from: 'a@b.example',
    to: 'c@d.example',
    date: '20261123',
    signature: 'a'.repeat(128),
  });
  const rounds: number[] = [];
  for (let i = 0; i < ROUNDS; i++) rounds.push(await load(url, '/', () => ({ body: q }), 200));
  await stopChildren();
  return median(rounds);
}

async function main() {
  const tmp = mkdtempSync(join(tmpdir(), 'scangate-bench-registry-'));
  const results: Record<string, unknown> = {};
  try {
    const peer = await baseline();
    const sqlite = await measure(await startServer('sqlite:registry.db', tmp), 1);
    await stopChildren();
    let postgres: Awaited<ReturnType<typeof measure>> | null = null;
    try {
      const pg = await startPostgres({ fsync: true });
      try {
        const url = await pg.createDatabase('registry_bench');
        postgres = await measure(await startServer(url, tmp), 2);
        await stopChildren();
      } finally {
        await pg.stop();
      }
    } catch (e) {
      console.error(`PostgreSQL not measured: ${(e as Error).message}`);
    }
    const row = (name: string, value: number | undefined) =>
      `${name.padEnd(44)} ${value === undefined ? '—'.padStart(10) : value.toFixed(0).padStart(10)} ${value === undefined ? '' : `${(value / peer).toFixed(2).padStart(8)}×`}`;
    console.log(
      `registry: ${SECONDS}s × ${ROUNDS} rounds (median), ${CONCURRENCY} in flight, keep-alive, ${PRELOAD} messages preloaded`,
    );
    console.log(`${'figure'.padEnd(44)} ${'req/s'.padStart(10)} ${'vs peer'.padStart(9)}`);
    console.log(row('peer: bare node:http, constant JSON', peer));
    console.log(row('verifications/s, SQLite', sqlite.verify));
    console.log(row('registrations/s, SQLite', sqlite.register));
    console.log(row('verifications/s, PostgreSQL (fsync on)', postgres?.verify));
    console.log(row('registrations/s, PostgreSQL (fsync on)', postgres?.register));
    const bar = sqlite.verify >= BAR_VERIFY_SQLITE;
    console.log(
      `bar: ≥ ${BAR_VERIFY_SQLITE} verifications/s on SQLite: ${bar ? 'met' : 'NOT met'} (${sqlite.verify.toFixed(0)})`,
    );
    Object.assign(results, {
      date: new Date().toISOString(),
      seconds: SECONDS,
      rounds: ROUNDS,
      concurrency: CONCURRENCY,
      preload: PRELOAD,
      peer: { name: 'bare node:http constant JSON', rps: peer },
      sqlite,
      postgres,
      bar: { verificationsPerSecondSqlite: BAR_VERIFY_SQLITE, met: bar },
    });
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'registry.json'),
      `${JSON.stringify(results, null, 2)}\n`,
    );
  } finally {
    await stopChildren();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
