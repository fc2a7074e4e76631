/**
 * ICAP server benchmark (issue 8), measured in one run on loopback with the same load client:
 *   RESPMOD requests/s for small objects and MB/s for large ones, every object unique (so no
 *   verdict cache helps either side), Preview 1024 and Allow: 204 as Squid sends them, against
 *   - `scangate run` with an icap listener (builtin engine),
 *   - Debian's c-icap with its virus_scan service scanning through clamd (clamd_mod), clamd loaded
 *     with the same signatures as scangate's builtin set (EICAR as hash and body signature),
 *   - c-icap's echo service: ICAP framing only, no scanning — the floor any ICAP server pays.
 * Rounds alternate between the three so background load hits all alike; the table shows medians.
 * Results go to bench/results/icap.json.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { icapLoad, type LoadResult } from './lib/icap-load.js';

const ROOT = join(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
const children: ChildProcess[] = [];

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  c.stderr!.on('data', (d) => process.env.BENCH_VERBOSE && process.stderr.write(d));
  children.push(c);
  return c;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** Waits until `target` (port or unix path) accepts connections. */
async function waitFor(target: number | string, what: string, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((r) => {
      const s = typeof target === 'number' ? net.connect(target, '127.0.0.1') : net.connect(target);
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not come up`);
}

async function startClamd(dir: string): Promise<string> {
  const db = join(dir, 'clamdb');
  mkdirSync(db);
  writeFileSync(join(db, 'bench.hdb'), '44d88612fea8a8f36de82e1278abb02f:68:Eicar-Signature\n');
  writeFileSync(
    join(db, 'bench.ndb'),
    `Eicar-Signature:0:*:${Buffer.from(EICAR, 'latin1').toString('hex')}\n`,
  );
  const sock = join(dir, 'clamd.sock');
  writeFileSync(
    join(dir, 'clamd.conf'),
    [
      'Foreground yes',
      `LocalSocket ${sock}`,
      `DatabaseDirectory ${db}`,
      'StreamMaxLength 200M',
      'MaxFileSize 200M',
      'MaxScanSize 400M',
      `LogFile ${join(dir, 'clamd.log')}`,
      `TemporaryDirectory ${dir}`,
      'User root',
      '',
    ].join('\n'),
  );
  start('clamd', ['-c', join(dir, 'clamd.conf')]);
  await waitFor(sock, 'clamd');
  return sock;
}

async function startCIcap(dir: string, clamdSock: string): Promise<number> {
  const port = await freePort();
  const conf = join(dir, 'c-icap.conf');
  writeFileSync(
    conf,
    [
      `PidFile ${join(dir, 'c-icap.pid')}`,
      `CommandsSocket ${join(dir, 'c-icap.ctl')}`,
      'Timeout 300',
      'MaxKeepAliveRequests 0',
      'KeepAliveTimeout 600',
      'StartServers 2',
      'MaxServers 4',
      'ThreadsPerChild 10',
      `Port 127.0.0.1:${port}`,
      `TmpDir ${dir}`,
      'MaxMemObject 131072',
      'DebugLevel 0',
      'ModulesDir /usr/lib/x86_64-linux-gnu/c_icap',
      'ServicesDir /usr/lib/x86_64-linux-gnu/c_icap',
      'TemplateDir /usr/share/c_icap/templates/',
      `ServerLog ${join(dir, 'c-icap-server.log')}`,
      `AccessLog ${join(dir, 'c-icap-access.log')}`,
      'Service echo srv_echo.so',
      'Module common clamd_mod.so',
      `clamd_mod.ClamdSocket ${clamdSock}`,
      'Service antivirus_module virus_scan.so',
      'ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple',
      'virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE',
      'virus_scan.MaxObjectSize 200M',
      'virus_scan.DefaultEngine clamd',
      '',
    ].join('\n'),
  );
  start('c-icap', ['-f', conf, '-N', '-D', '-d', '0']);
  await waitFor(port, 'c-icap');
  return port;
}

async function startScangate(dir: string): Promise<number> {
  const port = await freePort();
  const data = join(dir, 'scangate-data');
  mkdirSync(data);
  const cfg = join(dir, 'scangate.yaml');
  writeFileSync(
    cfg,
    [
      `dataDir: ${data}`,
      'log: { level: warn }',
      `listeners: [{ name: icap, protocol: icap, listen: 127.0.0.1:${port} }]`,
      'admin: null',
    ].join('\n'),
  );
  start(process.execPath, [join(ROOT, 'bin/scangate.js'), 'run', '-c', cfg], { SCANGATE_FROM_SOURCE: '1' });
  await waitFor(port, 'scangate');
  return port;
}

interface Target {
  name: string;
  port: number;
  service: string;
}

interface Scenario {
  name: string;
  size: number;
  connections: number;
}

const SCENARIOS: Scenario[] = [
  { name: '16 KB objects', size: 16 * 1024, connections: 8 },
  { name: '4 MB objects', size: 4 * 1024 * 1024, connections: 4 },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'scangate-bench-icap-'));
  try {
    const clamdSock = await startClamd(dir);
    const cIcapPort = await startCIcap(dir, clamdSock);
    const sgPort = await startScangate(dir);
    const targets: Target[] = [
      { name: 'scangate (builtin engine)', port: sgPort, service: 'avscan' },
      { name: 'c-icap virus_scan + clamd', port: cIcapPort, service: 'avscan' },
      { name: 'c-icap echo (no scanning)', port: cIcapPort, service: 'echo' },
    ];
    // Warm-up: first connections, signature loading in clamd, JIT.
    for (const t of targets) await icapLoad({ ...t, size: 64 * 1024, connections: 2, seconds: 1 });
    const results: Record<string, Record<string, LoadResult[]>> = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of SCENARIOS) {
        for (const t of targets) {
          const res = await icapLoad({
            port: t.port,
            service: t.service,
            size: s.size,
            connections: s.connections,
            seconds: SECONDS,
          });
          // Clean objects with Allow: 204: a scanner answers 204; the echo service may echo (200).
          const allowed = t.service === 'echo' ? ['200', '204'] : ['204'];
          if (res.requests === 0 || Object.keys(res.statuses).some((k) => !allowed.includes(k)))
            throw new Error(`${t.name} / ${s.name}: unexpected statuses ${JSON.stringify(res.statuses)}`);
          const byTarget = results[s.name] ?? {};
          results[s.name] = byTarget;
          byTarget[t.name] = [...(byTarget[t.name] ?? []), res];
        }
      }
    }
    const rows = SCENARIOS.flatMap((s) =>
      targets.map((t) => {
        const runs = results[s.name]![t.name]!;
        return {
          scenario: s.name,
          connections: s.connections,
          target: t.name,
          requestsPerSec: round(median(runs.map((x) => x.requests / x.seconds))),
          mbPerSec: round(median(runs.map((x) => x.bytes / x.seconds / 1024 ** 2))),
        };
      }),
    );
    console.log(
      `\nICAP RESPMOD (Preview 1024, Allow: 204, unique objects, all clean → 204), median of ${ROUNDS} alternating rounds of ${SECONDS} s, ${os.cpus().length} CPUs shared by client and servers`,
    );
    console.log(
      `  ${'objects / server'.padEnd(54)} ${'req/s'.padStart(8)} ${'MB/s'.padStart(8)} ${'vs c-icap+clamd'.padStart(16)} ${'vs echo'.padStart(8)}`,
    );
    const ratios: Record<string, { vsVirusScan: number; vsEcho: number }> = {};
    for (const s of SCENARIOS) {
      const of = (name: string) => rows.find((r) => r.scenario === s.name && r.target === name)!;
      const vs = of(targets[1]!.name);
      const echo = of(targets[2]!.name);
      for (const t of targets) {
        const row = of(t.name);
        const a = row.requestsPerSec / vs.requestsPerSec;
        const b = row.requestsPerSec / echo.requestsPerSec;
        if (t === targets[0]) ratios[s.name] = { vsVirusScan: round(a, 2), vsEcho: round(b, 2) };
        console.log(
          `  ${`${s.name} (${s.connections} conn) / ${t.name}`.padEnd(54)} ${String(row.requestsPerSec).padStart(8)} ${String(row.mbPerSec).padStart(8)} ${`${a.toFixed(2)}x`.padStart(16)} ${`${b.toFixed(2)}x`.padStart(8)}`,
        );
      }
    }
    const result = { date: new Date().toISOString(), seconds: SECONDS, rounds: ROUNDS, rows, ratios };
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/icap.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
