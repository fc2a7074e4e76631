/**
 * FTP gateway benchmark (issue 5, done-when 5), one run on loopback: MB/s of a 200 MB upload and
 * download with curl, directly to Debian's vsftpd and through scangate's FTP listener to the same
 * vsftpd; the ratio is the figure (bar 0.5, goal 0.8). Two variants: plain FTP and explicit FTPS on
 * both legs (PROT P, vsftpd require_ssl_reuse=YES). Every round uses fresh random content and the
 * verdict cache is off, so every transfer is really scanned (a repeated file would be a cache hit).
 * Engine limits are raised to 1 GB (the defaults, ClamAV's, would refuse a 200 MB file as
 * Heuristics.Limits.Exceeded — the gateway never passes an object unscanned).
 *
 * The gateway runs in this process (the bench itself only waits for curl meanwhile); vsftpd runs
 * one process per connection as under inetd. Results: bench/results/ftp.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBuiltinScanner } from '../src/engine/index.js';
import { curlArgs, runClient, startFtpGateway } from '../test/helpers/ftp-gateway.js';
import { startVsftpd } from '../test/helpers/ftp-vsftpd.js';
import { TestCa } from '../test/helpers/pki.js';

const MB = 1024 * 1024;
const SIZE_MB = Number(process.env.BENCH_FTP_MB ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROOT = join(import.meta.dirname, '..');

type Style = 'none' | 'explicit';

async function timed(args: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await runClient('curl', args, 600_000);
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(ROOT, '.tmp', 'bench-ftp-'));
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  const ca = await TestCa.create();
  const scanner = await createBuiltinScanner({
    cacheEntries: 0,
    limits: { maxFileSize: 1024 * MB, maxScanSize: 1024 * MB },
  });
  const rows: Record<string, unknown>[] = [];
  try {
    const styles = (process.env.BENCH_FTP_TLS?.split(',') ?? ['none', 'explicit']) as Style[];
    for (const style of styles) {
      const vs = await startVsftpd({ tls: style, ca });
      const gw = await startFtpGateway({
        dir: join(dir, `gw-${style}`),
        scanner,
        upstreamCa: [vs.caFile],
        listener: {
          upstream: `127.0.0.1:${vs.port}`,
          tls: { client: style, upstream: style },
          passivePorts: '47000-47099',
          maxFileSize: '1GB',
        },
        engine: { limits: { maxFileSize: '1GB', maxScanSize: '1GB' } },
      });
      const speeds: Record<string, number[]> = {
        upDirect: [],
        upGateway: [],
        downDirect: [],
        downGateway: [],
      };
      try {
        for (let round = 0; round < ROUNDS; round++) {
          const file = join(dir, 'src.bin');
          writeFileSync(file, randomBytes(SIZE_MB * MB));
          const out = join(dir, 'out.bin');
          const paths = {
            direct: { port: vs.port, caFile: vs.caFile },
            gateway: { port: gw.port, caFile: gw.caFile },
          };
          for (const via of ['direct', 'gateway'] as const) {
            const base = { ...paths[via], tls: style, mode: 'epsv' as const };
            const name = `/pub/bench-${via}-${round}.bin`;
            const up = await timed([...curlArgs({ ...base, path: name }), '-T', file]);
            const down = await timed([...curlArgs({ ...base, path: name }), '-o', out]);
            if (statSync(out).size !== SIZE_MB * MB) throw new Error('short download');
            rmSync(out);
            rmSync(join(vs.uploadDir, name.slice(5)));
            speeds[via === 'direct' ? 'upDirect' : 'upGateway']!.push(SIZE_MB / up);
            speeds[via === 'direct' ? 'downDirect' : 'downGateway']!.push(SIZE_MB / down);
          }
        }
      } finally {
        await gw.close();
        await vs.close();
      }
      for (const dirn of ['up', 'down'] as const) {
        const direct = median(speeds[`${dirn}Direct`]!);
        const through = median(speeds[`${dirn}Gateway`]!);
        rows.push({
          tls: style === 'none' ? 'plain' : 'explicit FTPS both legs',
          direction: dirn === 'up' ? 'upload' : 'download',
          directMBps: Number(direct.toFixed(1)),
          scangateMBps: Number(through.toFixed(1)),
          ratio: Number((through / direct).toFixed(3)),
          roundsDirect: speeds[`${dirn}Direct`]!.map((x) => Number(x.toFixed(1))),
          roundsScangate: speeds[`${dirn}Gateway`]!.map((x) => Number(x.toFixed(1))),
        });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`FTP ${SIZE_MB} MB file, curl, median of ${ROUNDS} rounds (scanned every time, cache off)`);
  console.log('tls                      direction  direct MB/s  scangate MB/s  ratio');
  for (const r of rows)
    console.log(
      `${String(r.tls).padEnd(24)} ${String(r.direction).padEnd(10)} ${String(r.directMBps).padStart(11)}  ${String(r.scangateMBps).padStart(13)}  ${String(r.ratio).padStart(5)}`,
    );
  writeFileSync(
    join(ROOT, 'bench', 'results', 'ftp.json'),
    `${JSON.stringify({ sizeMB: SIZE_MB, rounds: ROUNDS, bar: 0.5, goal: 0.8, rows }, null, 2)}\n`,
  );
}

await main();
process.exit(0);
