/**
 * The load side of bench/workers.ts — origin, clients — and the CPU accounting that says where each
 * core went. On a 2-core machine the clients and the origin share the cores with scangate, so every
 * millisecond they spend per MB is a millisecond a second worker cannot have: they are kept as cheap
 * as real ones can be, and their CPU is reported next to scangate's.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** /proc counts CPU time in USER_HZ ticks, 100 per second on Linux whatever the kernel's HZ. */
const TICK_MS = 10;

/** Fields of a /proc stat line after the command name; fields[N - 3] is field N of proc(5). */
function statFields(path: string): string[] {
  const stat = readFileSync(path, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * The origin, run by plain node (no tsx loader): /obj/N is the same prepared buffer with N in its
 * first 16 bytes, so every object is new content. The body goes out in 1 MiB writes that follow
 * backpressure: one 8 MB write made Node's TLS layer encrypt and buffer the whole object at once,
 * which cost the origin about twice the CPU per MB on a fresh connection (measured direct with curl).
 */
export const ORIGIN_SCRIPT = `
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
const [cert, key, mb] = process.argv.slice(2);
const base = randomBytes(Number(mb) * 1024 * 1024);
const PIECE = 1024 * 1024;
const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
  const n = Number(/\\/obj\\/(\\d+)/.exec(req.url ?? '')?.[1] ?? 0);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': base.length });
  res.write(Buffer.from(String(n).padStart(16, '0')));
  let off = 16;
  const pump = () => {
    while (off < base.length) {
      const end = Math.min(base.length, off + PIECE);
      const piece = base.subarray(off, end);
      off = end;
      if (end === base.length) res.end(piece);
      else if (!res.write(piece)) return void res.once('drain', pump);
    }
  };
  pump();
});
server.maxConnections = 5000;
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
`;

export interface LoadTarget {
  proxyPort: number;
  originPort: number;
  /** CA file the clients trust (scangate's interception CA). */
  ca: string;
  objectBytes: number;
}

/**
 * `paths.length` downloads through the proxy by `clients` curl processes at once, each fetching its
 * share one after the other. Every download is what a new curl process made before (a new CONNECT,
 * a full TLS handshake with no session resumed, `Connection: close`), so scangate does the same
 * work per download; what goes is curl's own start-up (libraries, CA file, ~15 ms per download on
 * this machine), which made the clients cost about as much as the scan. Returns MB/s.
 */
export async function download(t: LoadTarget, paths: string[], clients: number): Promise<number> {
  const t0 = performance.now();
  const shares = Array.from({ length: clients }, (_, k) => paths.filter((_, i) => i % clients === k));
  const counts = await Promise.all(shares.filter((s) => s.length).map((share) => curlClient(t, share)));
  const bytes = counts.reduce((a, b) => a + b, 0) * t.objectBytes;
  return bytes / 1024 / 1024 / ((performance.now() - t0) / 1000);
}

async function curlClient(t: LoadTarget, paths: string[]): Promise<number> {
  const args = ['-s', '--no-sessionid', '-H', 'Connection: close', '--cacert', t.ca];
  args.push('-x', `http://127.0.0.1:${t.proxyPort}`, '-w', '%{http_code} %{size_download}\\n');
  for (const p of paths) args.push(`https://localhost:${t.originPort}${p}`, '-o', '/dev/null');
  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn('curl', args);
    let s = '';
    c.stdout.on('data', (d) => {
      s += d;
    });
    c.on('close', () => resolve(s));
    c.on('error', reject);
  });
  const lines = out.trim().split('\n');
  lines.forEach((l, i) => {
    const [code, size] = l.split(' ');
    if (code !== '200' || Number(size) !== t.objectBytes) throw new Error(`download ${paths[i]}: ${l}`);
  });
  if (lines.length !== paths.length) throw new Error(`${lines.length} of ${paths.length} downloads done`);
  return lines.length;
}

/** CPU ms of one process split into its main thread (the event loop) and its other threads. */
export interface ThreadCpu {
  main: number;
  threads: number;
}

/** utime + stime (fields 14 and 15), or with `waited` cutime + cstime (16 and 17), in ms. */
function cpuOf(path: string, waited = false): number {
  const f = statFields(path);
  return (waited ? Number(f[13]) + Number(f[14]) : Number(f[11]) + Number(f[12])) * TICK_MS;
}

function threadCpu(pid: number): ThreadCpu {
  try {
    const all = cpuOf(`/proc/${pid}/stat`);
    const main = cpuOf(`/proc/${pid}/task/${pid}/stat`);
    return { main, threads: all - main };
  } catch {
    return { main: 0, threads: 0 }; // exited
  }
}

/**
 * The node processes a process started: cluster workers. Others are left out: tsx's esbuild service,
 * started when a source file is not in tsx's cache, had the one-worker gateway counted as a primary.
 */
function nodeChildrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`)
      .flatMap((t) =>
        readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
      )
      .filter((kid) => exeOf(kid) === process.execPath);
  } catch {
    return [];
  }
}

function exeOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null; // exited
  }
}

/**
 * CPU ms so far of a scangate process: with one worker the process is the worker; with a cluster it
 * is the primary and its children are the workers.
 */
export function scangateCpu(pid: number): { workers: ThreadCpu; primary: ThreadCpu } {
  const kids = nodeChildrenOf(pid);
  const root = threadCpu(pid);
  if (kids.length === 0) return { workers: root, primary: { main: 0, threads: 0 } };
  const workers = kids
    .map(threadCpu)
    .reduce((a, b) => ({ main: a.main + b.main, threads: a.threads + b.threads }));
  return { workers, primary: root };
}

/** CPU ms of this process's children that have exited and been waited for (the curl clients). */
export function reapedChildrenCpuMs(): number {
  return cpuOf('/proc/self/stat', true);
}

/** CPU ms so far of any process. */
export function processCpuMs(pid: number): number {
  return cpuOf(`/proc/${pid}/stat`);
}

/** Busy CPU ms of the whole machine so far (every process, ours and others'). */
export function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) * TICK_MS;
}
