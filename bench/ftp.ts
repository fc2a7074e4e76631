/**
 * FTP gateway benchmark (issue 5, done-when 5), one run on loopback: MB/s of a 200 MB upload and
 * download with curl, directly to Debian's vsftpd and through scangate's FTP listener to the same
 * vsftpd; the ratio is the figure (bar 0.5, goal 0.8). Two variants: plain FTP and explicit FTPS on
 * both legs (PROT P, vsftpd require_ssl_reuse=YES). Every round uses fresh random content and the
 * verdict cache is off, so every transfer is really scanned (a repeated file would be a cache hit).
 * Engine limits are raised to 1 GB (the defaults, ClamAV's, would refuse a 200 MB file as
 * Heuristics.Limits.Exceeded — the gateway never passes an object unscanned).
 *
 * The listener runs on its defaults: a 200 MB file is above holdLimit (32 MB), so it streams
 * through with the last keepBack (1 MB) held until the verdict, the product's default behaviour
 * (files up to holdLimit are store-and-forward; their speed is not what this measures).
 *
 * A third path, "relay only", is a second scangate listener whose scanner answers clean without
 * reading a byte: the gateway's relay alone (both legs, TLS, the keep-back tail), the ceiling the
 * scanning path can reach on this machine.
 *
 * Wall time on a shared 2-core box is noisy, so CPU is reported too, in ms per MB: scangate's (this
 * process, which hosts the gateway; the bench itself only waits for curl) and curl + vsftpd's for
 * the direct transfer (reaped children, /proc/self/stat). The gateway runs in this process; vsftpd
 * runs one process per connection as under inetd. Results: bench/results/ftp.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBuiltinScanner } from '../src/engine/index.js';
import type { Scanner } from '../src/engine/types.js';
import { curlArgs, runClient, startFtpGateway } from '../test/helpers/ftp-gateway.js';
import { startVsftpd } from '../test/helpers/ftp-vsftpd.js';
import { TestCa } from '../test/helpers/pki.js';

const MB = 1024 * 1024;
const SIZE_MB = Number(process.env.BENCH_FTP_MB ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROOT = join(import.meta.dirname, '..');
const CLK_TCK = 100;

type Style = 'none' | 'explicit';
const ALL_PATHS = ['direct', 'scangate', 'relayOnly'] as const;
type Path = (typeof ALL_PATHS)[number];
/** BENCH_FTP_PATHS=relayOnly (e.g. to profile one path); the table needs all three. */
const PATHS = (process.env.BENCH_FTP_PATHS?.split(',') as Path[] | undefined) ?? ALL_PATHS;
type Dirn = 'up' | 'down';

/** A scanner that reads nothing: measures the gateway's store-and-forward without the scan. */
const noScan: Scanner = {
  scan: async () => ({ status: 'clean' }),
  version: () => ({ engine: 'none', signatures: 0, databaseVersion: 'none' }),
};

/** CPU seconds of this process's reaped children (curl; vsftpd with its own children). */
function childCpu(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // After ") " field 3 (state) is index 0: cutime (16) and cstime (17) are 13 and 14.
  return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

interface Sample {
  mbps: number;
  /** CPU ms per MB of this process (the gateway; near zero for direct transfers). */
  gatewayCpu: number;
  /** CPU ms per MB of curl and vsftpd. */
  peersCpu: number;
}

async function timed(args: string[]): Promise<Sample> {
  const cpu0 = process.cpuUsage();
  const peers0 = childCpu();
  const t0 = performance.now();
  const r = await runClient('curl', args, 600_000);
  const seconds = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}`);
  const cpu = process.cpuUsage(cpu0);
  // A direct vsftpd exits once curl has closed the control connection; let it be reaped first.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return {
    mbps: SIZE_MB / seconds,
    gatewayCpu: (cpu.user + cpu.system) / 1000 / SIZE_MB,
    peersCpu: ((childCpu() - peers0) * 1000) / SIZE_MB,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const fixed = (x: number, digits = 1) => Number(x.toFixed(digits));

async function runStyle(style: Style, dir: string, ca: TestCa, scanner: Scanner) {
  const samples = new Map<string, Sample[]>();
  const vs = await startVsftpd({ tls: style, ca });
  const gateway = (name: string, s: Scanner) =>
    startFtpGateway({
      dir: join(dir, `gw-${style}-${name}`),
      scanner: s,
      upstreamCa: [vs.caFile],
      listener: {
        upstream: `127.0.0.1:${vs.port}`,
        tls: { client: style, upstream: style },
        passivePorts: name === 'scan' ? '47000-47049' : '47050-47099',
        maxFileSize: '1GB',
        // BENCH_FTP_SPOOL_MEMORY=256MB keeps the whole file in memory (default: the listener's 16 MB).
        ...(process.env.BENCH_FTP_SPOOL_MEMORY ? { spoolMemory: process.env.BENCH_FTP_SPOOL_MEMORY } : {}),
      },
      engine: { limits: { maxFileSize: '1GB', maxScanSize: '1GB' } },
    });
  const scanned = await gateway('scan', scanner);
  const relay = await gateway('relay', noScan);
  try {
    const ports: Record<Path, { port: number; caFile: string }> = {
      direct: { port: vs.port, caFile: vs.caFile },
      scangate: { port: scanned.port, caFile: scanned.caFile },
      relayOnly: { port: relay.port, caFile: relay.caFile },
    };
    for (let round = 0; round < ROUNDS; round++) {
      const file = join(dir, 'src.bin');
      writeFileSync(file, randomBytes(SIZE_MB * MB));
      const out = join(dir, 'out.bin');
      for (const via of PATHS) {
        const base = { ...ports[via], tls: style, mode: 'epsv' as const };
        const name = `/pub/bench-${via}-${round}.bin`;
        const up = await timed([...curlArgs({ ...base, path: name }), '-T', file]);
        const down = await timed([...curlArgs({ ...base, path: name }), '-o', out]);
        if (statSync(out).size !== SIZE_MB * MB) throw new Error('short download');
        rmSync(out);
        rmSync(join(vs.uploadDir, name.slice(5)));
        for (const [dirn, s] of [
          ['up', up],
          ['down', down],
        ] as const) {
          const key = `${dirn}-${via}`;
          samples.set(key, [...(samples.get(key) ?? []), s]);
        }
      }
    }
  } finally {
    await scanned.close();
    await relay.close();
    await vs.close();
  }
  const med = (dirn: Dirn, via: Path, f: (s: Sample) => number) =>
    median(samples.get(`${dirn}-${via}`)!.map(f));
  return (['up', 'down'] as const).map((dirn) => {
    const direct = med(dirn, 'direct', (s) => s.mbps);
    const through = med(dirn, 'scangate', (s) => s.mbps);
    const relayOnly = med(dirn, 'relayOnly', (s) => s.mbps);
    return {
      tls: style === 'none' ? 'plain' : 'explicit FTPS both legs',
      direction: dirn === 'up' ? 'upload' : 'download',
      directMBps: fixed(direct),
      scangateMBps: fixed(through),
      ratio: fixed(through / direct, 3),
      relayOnlyMBps: fixed(relayOnly),
      relayOnlyRatio: fixed(relayOnly / direct, 3),
      cpuMsPerMB: {
        directCurlVsftpd: fixed(
          med(dirn, 'direct', (s) => s.peersCpu),
          2,
        ),
        scangate: fixed(
          med(dirn, 'scangate', (s) => s.gatewayCpu),
          2,
        ),
        relayOnly: fixed(
          med(dirn, 'relayOnly', (s) => s.gatewayCpu),
          2,
        ),
      },
      rounds: Object.fromEntries(
        PATHS.map((via) => [via, samples.get(`${dirn}-${via}`)!.map((s) => fixed(s.mbps))]),
      ),
    };
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(ROOT, '.tmp', 'bench-ftp-'));
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  const ca = await TestCa.create();
  const scanner = await createBuiltinScanner({
    cacheEntries: 0,
    limits: { maxFileSize: 1024 * MB, maxScanSize: 1024 * MB },
  });
  const rows: Awaited<ReturnType<typeof runStyle>> = [];
  try {
    const styles = (process.env.BENCH_FTP_TLS?.split(',') ?? ['none', 'explicit']) as Style[];
    for (const style of styles) rows.push(...(await runStyle(style, dir, ca, scanner)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    `FTP ${SIZE_MB} MB file, curl EPSV, median of ${ROUNDS} rounds (scanned every time, cache off; listener defaults: above holdLimit 32 MB the file streams, 1 MB keep-back); relay only = scangate with a scanner that reads nothing`,
  );
  console.log(
    'tls                      direction  direct MB/s  scangate MB/s  ratio  relay-only MB/s  ratio | CPU ms/MB: curl+vsftpd direct  scangate  relay-only',
  );
  for (const r of rows) {
    const c = r.cpuMsPerMB;
    console.log(
      `${r.tls.padEnd(24)} ${r.direction.padEnd(10)} ${String(r.directMBps).padStart(11)}  ${String(r.scangateMBps).padStart(13)}  ${String(r.ratio).padStart(5)}  ${String(r.relayOnlyMBps).padStart(15)}  ${String(r.relayOnlyRatio).padStart(5)} | ${String(c.directCurlVsftpd).padStart(29)}  ${String(c.scangate).padStart(8)}  ${String(c.relayOnly).padStart(10)}`,
    );
  }
  writeFileSync(
    join(ROOT, 'bench', 'results', 'ftp.json'),
    `${JSON.stringify({ sizeMB: SIZE_MB, rounds: ROUNDS, bar: 0.5, goal: 0.8, rows }, null, 2)}\n`,
  );
}

await main();
process.exit(0);
