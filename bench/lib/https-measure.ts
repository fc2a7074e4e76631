/**
 * Measuring helpers for the HTTPS benchmark: CPU time of a process from /proc (all its threads,
 * user + system), curl downloads with curl's own CPU time, medians, and child-process plumbing.
 * CPU time per MB or per request is the figure to optimise on a shared, noisy machine: it does not
 * move when another process steals the cores, where MB/s does.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';

const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim() || 100);

/** utime + stime of a live process, in milliseconds (field 14 and 15 of /proc/PID/stat). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Download {
  bytesPerSec: number;
  /** CPU milliseconds curl itself used (decrypting, writing to /dev/null). */
  curlCpuMs: number;
}

/**
 * One download by curl, its speed as curl measured it and curl's CPU time: the shell that runs curl
 * reads its own /proc stat afterwards, whose cutime/cstime (fields 16 and 17) are curl's.
 */
export function curlDownload(url: string, expectBytes: number, ca: string, proxy?: string): Download {
  const args = ['-s', '-o', '/dev/null', '-w', '%{speed_download} %{http_code} %{size_download}\\n'];
  args.push('--cacert', ca);
  if (proxy) args.push('-x', proxy);
  const r = spawnSync('sh', ['-c', 'curl "$@" && cat /proc/$$/stat', 'sh', ...args, url], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  const [result, stat] = r.stdout.split('\n');
  const [speed, code, size] = (result ?? '').split(' ');
  if (r.status !== 0 || code !== '200' || Number(size) !== expectBytes)
    throw new Error(`download via ${proxy ?? 'direct'}: exit ${r.status}, HTTP ${code}, ${size} bytes`);
  const fields = stat!.slice(stat!.lastIndexOf(')') + 2).split(' ');
  return { bytesPerSec: Number(speed), curlCpuMs: (Number(fields[13]) + Number(fields[14])) * TICK_MS };
}

export class Children {
  private readonly all: ChildProcess[] = [];

  start(cmd: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
    const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.all.push(c);
    // The last few KB of stderr, shown if the process dies before the bench is done with it.
    let tail = '';
    c.stderr!.on('data', (d: Buffer) => {
      if (process.env.BENCH_VERBOSE) process.stderr.write(d);
      tail = (tail + d.toString()).slice(-4000);
    });
    c.once('exit', (code, signal) => {
      if (code !== null && code !== 0) process.stderr.write(`${cmd} exited ${code}:\n${tail}\n`);
      else if (signal && signal !== 'SIGKILL') process.stderr.write(`${cmd} killed by ${signal}\n`);
    });
    return c;
  }

  killAll(): void {
    for (const c of this.all) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

/** Resolves with the next stdout line of `c` that is JSON and has `key`. */
export function jsonLine<T>(c: ChildProcess, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: c.stdout! });
    const onExit = (code: number | null) => reject(new Error(`${c.spawnargs.join(' ')} exited ${code}`));
    rl.on('line', (l) => {
      if (!l.startsWith('{')) return;
      const v = JSON.parse(l) as Record<string, unknown>;
      if (!(key in v)) return;
      rl.close();
      c.off('exit', onExit);
      resolve(v as T);
    });
    c.once('exit', onExit);
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export async function waitPort(port: number, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} did not open`);
}
