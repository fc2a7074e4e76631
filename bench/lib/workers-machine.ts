/**
 * The machine as bench/workers' peer: the same job in one process, then in one per core at once,
 * started together once every process is ready. On an idle machine a job that scales gives about
 * the core count; when other work holds the cores it is what a second worker could add right now.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface Scaling {
  /** MB/s of one process, then summed over one per core. */
  solo: number;
  parallel: number;
  ratio: number;
  /** Cores kept busy by the one process, then by all (helper threads included), when the job says. */
  soloCores?: number;
  parallelCores?: number;
}

interface JobResult {
  mbps: number;
  cores?: number;
}

/** SHA-256 over 1 MiB buffers for 2 s: pure CPU, no memory traffic to speak of. */
const SHA_JOB = `const { createHash } = require('node:crypto'); const b = Buffer.alloc(1 << 20, 7);
  console.log('ready');
  process.stdin.once('data', () => {
    const t0 = performance.now(); let n = 0;
    while (performance.now() - t0 < 2000) { createHash('sha256').update(b).digest(); n++; }
    console.log(JSON.stringify({ mbps: n / 2 }));
    process.exit(0);
  });`;

export function shaScaling(cores: number): Promise<Scaling> {
  return scaling(cores, ['-e', SHA_JOB]);
}

/**
 * The engine alone with the gateway's database (SHA-256 and matching of distinct 8 MB objects): each
 * process holds its own copy of the compiled matcher, as each worker does, so this says whether two
 * copies on two cores slow each other down (shared caches, memory bandwidth) without any network.
 */
export function engineScaling(cores: number, signatures: string[]): Promise<Scaling> {
  return scaling(cores, ['--import', 'tsx', join(import.meta.dirname, 'engine-scan-job.ts'), ...signatures]);
}

async function scaling(cores: number, args: string[]): Promise<Scaling> {
  const [one] = await run(1, args);
  const all = await run(cores, args);
  const parallel = all.reduce((a, r) => a + r.mbps, 0);
  const parallelCores = all.every((r) => r.cores !== undefined)
    ? all.reduce((a, r) => a + r.cores!, 0)
    : undefined;
  return { solo: one!.mbps, parallel, ratio: parallel / one!.mbps, soloCores: one!.cores, parallelCores };
}

/** The results of `k` processes of the job, timed together. */
async function run(k: number, args: string[]): Promise<JobResult[]> {
  const procs = Array.from({ length: k }, () =>
    spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  try {
    const lines = procs.map((p) => createInterface({ input: p.stdout })[Symbol.asyncIterator]());
    const next = async (it: AsyncIterator<string>) => {
      const r = await it.next();
      if (r.done) throw new Error('machine scaling job exited early');
      return r.value;
    };
    await Promise.all(lines.map(next)); // every process loaded and warm
    for (const p of procs) p.stdin.write('go\n');
    return await Promise.all(lines.map(async (it) => JSON.parse(await next(it)) as JobResult));
  } finally {
    for (const p of procs) p.kill('SIGKILL');
  }
}
