/**
 * Debian's Squid with scangate as its RESPMOD service (issue 8, done-when 2): Squid is started by
 * the test with its own squid.conf in a temp dir (loopback port, no cache, icap_enable on,
 * respmod_precache pointing at scangate, bypass off) and downloads over plain HTTP from an
 * in-process origin go through it. Clean objects (small, 3 MB, chunked) arrive byte-identical;
 * EICAR (plain or gzip-encoded) gets scangate's block page; an infected object too large for
 * Squid to wait on is cut before its end, never delivered whole.
 *
 * Running as root, Squid drops to cache_effective_user (Debian's `proxy`), so the temp dir is
 * handed to that user; as another user it simply runs as that user.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MemoryEventSink } from '../../src/admin/events.js';
import { createBuiltinScanner } from '../../src/engine/index.js';
import type { RunningService } from '../../src/net/service.js';
import { EICAR, EICAR_NAME } from '../helpers/eicar.js';
import { startTestIcap } from '../helpers/icap.js';
import { isRoot, peer, which } from '../helpers/peers.js';

const squidBin = which('squid');
const events = new MemoryEventSink();
let dir: string;
let icap: RunningService | null = null;
let origin: Server | null = null;
let originPort = 0;
let squid: ChildProcess | null = null;
let squidPort = 0;
let squidExit: string | null = null;

const objects = new Map<string, { body: Buffer; headers: Record<string, string>; chunked?: boolean }>([
  ['/small.bin', { body: randomBytes(5_000), headers: { 'content-type': 'application/octet-stream' } }],
  [
    '/big.bin',
    { body: randomBytes(3 * 1024 * 1024), headers: { 'content-type': 'application/octet-stream' } },
  ],
  [
    '/stream.bin',
    {
      body: randomBytes(1024 * 1024),
      headers: { 'content-type': 'application/octet-stream' },
      chunked: true,
    },
  ],
  ['/eicar.com', { body: EICAR, headers: { 'content-type': 'application/octet-stream' } }],
  [
    '/eicar.txt.gz',
    { body: gzipSync(EICAR), headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' } },
  ],
  [
    '/late-eicar.bin',
    {
      body: Buffer.concat([randomBytes(300_000), EICAR]),
      headers: { 'content-type': 'application/octet-stream' },
    },
  ],
]);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createTcpServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (squidExit) throw new Error(`squid exited: ${squidExit}\n${readLog('cache.log')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`squid did not listen in time\n${readLog('cache.log')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function readLog(name: string): string {
  try {
    return readFileSync(join(dir, name), 'utf8').slice(-3000);
  } catch {
    return '';
  }
}

before(async () => {
  if (!squidBin) return;
  dir = mkdtempSync(join(tmpdir(), 'sg-squid-'));
  const started = await startTestIcap({
    dataDir: join(dir, 'data'),
    scanner: await createBuiltinScanner(),
    events,
  });
  icap = started.service;
  origin = createServer((req, res) => {
    const o = objects.get(req.url ?? '');
    if (!o) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, o.chunked ? o.headers : { ...o.headers, 'content-length': String(o.body.length) });
    if (!o.chunked) {
      res.end(o.body);
      return;
    }
    for (let i = 0; i < o.body.length; i += 100_000) res.write(o.body.subarray(i, i + 100_000));
    res.end();
  });
  await new Promise<void>((r) => origin!.listen(0, '127.0.0.1', r));
  originPort = (origin.address() as AddressInfo).port;
  squidPort = await freePort();
  const icapPort = started.port;
  const lines = [
    `http_port 127.0.0.1:${squidPort}`,
    `pid_filename ${join(dir, 'squid.pid')}`,
    `cache_log ${join(dir, 'cache.log')}`,
    `access_log stdio:${join(dir, 'access.log')}`,
    'cache_store_log none',
    'cache deny all',
    'cache_mem 0 MB',
    `coredump_dir ${dir}`,
    'visible_hostname scangate-test',
    'pinger_enable off',
    'netdb_filename none',
    'shutdown_lifetime 0 seconds',
    'http_access allow localhost',
    'http_access deny all',
    'icap_enable on',
    `icap_service scangate respmod_precache icap://127.0.0.1:${icapPort}/respmod bypass=off`,
    'adaptation_access scangate allow all',
  ];
  if (isRoot()) {
    // Squid refuses to keep root privileges; it switches to this user, which must own the files.
    lines.push('cache_effective_user proxy');
    const uid = Number(execFileSync('id', ['-u', 'proxy'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'proxy'], { encoding: 'utf8' }).trim());
    writeFileSync(join(dir, 'squid.conf'), `${lines.join('\n')}\n`);
    chownSync(dir, uid, gid);
    chownSync(join(dir, 'squid.conf'), uid, gid);
  } else {
    writeFileSync(join(dir, 'squid.conf'), `${lines.join('\n')}\n`);
  }
  squid = spawn(squidBin, ['-N', '-f', join(dir, 'squid.conf')], { stdio: 'ignore' });
  squid.once('exit', (code, signal) => {
    squidExit = `code ${code} signal ${signal}`;
  });
  await waitForPort(squidPort, 60_000);
});

after(async () => {
  if (squid && !squidExit) {
    const exited = new Promise((r) => squid!.once('exit', r));
    squid.kill('SIGTERM');
    const timer = setTimeout(() => squid?.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await icap?.close(100);
  await new Promise((r) => (origin ? origin.close(r) : r(null)));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Download {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  complete: boolean;
}

/** GET through Squid (absolute-form URL, as a browser configured with the proxy sends it). */
function download(path: string): Promise<Download> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: squidPort, path: `http://127.0.0.1:${originPort}${path}`, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        const done = (complete: boolean) =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts),
            complete,
          });
        res.on('end', () => done(res.complete));
        res.on('aborted', () => done(false));
        res.on('error', () => done(false));
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error(`download of ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('Squid with scangate as its ICAP RESPMOD service', () => {
  it('clean downloads pass byte-identical: 5 KB, 3 MB and chunked 1 MB', async (t) => {
    if (!peer(t, 'squid')) return;
    for (const path of ['/small.bin', '/big.bin', '/stream.bin']) {
      const d = await download(path);
      assert.equal(d.status, 200, `${path}: ${d.body.toString('latin1').slice(0, 300)}`);
      assert.ok(d.complete, path);
      assert.equal(sha(d.body), sha(objects.get(path)!.body), path);
    }
  });

  it('EICAR is blocked with the block page naming the signature, plain and gzip-encoded', async (t) => {
    if (!peer(t, 'squid')) return;
    for (const path of ['/eicar.com', '/eicar.txt.gz']) {
      const d = await download(path);
      assert.equal(d.status, 403, path);
      assert.equal(d.headers['x-scangate-verdict'], `infected; signature="${EICAR_NAME}"`);
      assert.match(d.body.toString(), new RegExp(`<strong>${EICAR_NAME}</strong>`));
      assert.match(
        d.body.toString(),
        new RegExp(`http://127\\.0\\.0\\.1:${originPort}${path.replace('.', '\\.')}`),
      );
    }
    assert.ok(events.events.some((e) => e.protocol === 'icap' && e.action === 'blocked'));
  });

  it('an infected object Squid cannot wait on is cut before its end, never delivered whole', async (t) => {
    if (!peer(t, 'squid')) return;
    const d = await download('/late-eicar.bin');
    const whole = objects.get('/late-eicar.bin')!.body;
    assert.ok(!d.complete || d.status !== 200, 'the transfer must not complete as a 200');
    assert.ok(d.body.length < whole.length, `received ${d.body.length} of ${whole.length}`);
    assert.ok(!d.body.includes(EICAR), 'the infected part never reaches the client');
    assert.ok(events.events.some((e) => e.protocol === 'icap' && e.action === 'partiallyblocked'));
    // Squid and scangate carry on: the next download through the same Squid works.
    const next = await download('/small.bin');
    assert.equal(sha(next.body), sha(objects.get('/small.bin')!.body));
  });
});
