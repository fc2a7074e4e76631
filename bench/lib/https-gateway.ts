/**
 * The gateway under benchmark: `scangate run -c CONFIG` from the TypeScript sources (so a stale
 * dist/ never stands in for the checkout), in this process, plus one bench-only control. For the
 * memory figures it is started with --expose-gc; on SIGUSR2 it then runs full garbage collections,
 * asks glibc to hand back the free memory it caches (malloc_trim, through koffi), and prints one
 * JSON line {"memory": {...}} with process.memoryUsage() figures. So the bench compares memory in
 * use rather than garbage or freed pages the allocator kept from an earlier phase (RSS after freeing
 * a thousand TLS sessions otherwise depends on whether a GC happened to run before or after they
 * were freed).
 */
import { createRequire } from 'node:module';

function mallocTrim(): () => void {
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const trim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)');
    return () => trim(0);
  } catch {
    return () => {};
  }
}
const trim = mallocTrim();
const config = process.argv[2];
if (!config) throw new Error('usage: https-gateway.ts CONFIG');

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('start with --expose-gc');
  // Two passes: the first runs finalizers (sockets' native handles) whose memory the second frees.
  gc();
  gc();
  trim();
  const m = process.memoryUsage();
  process.stdout.write(
    `${JSON.stringify({
      memory: {
        rssKiB: m.rss / 1024,
        heapUsedKiB: m.heapUsed / 1024,
        externalKiB: m.external / 1024,
        arrayBuffersKiB: m.arrayBuffers / 1024,
      },
    })}\n`,
  );
});

process.argv = [process.argv[0]!, 'scangate', 'run', '-c', config];
await import('../../src/cli/main.js' as string);
