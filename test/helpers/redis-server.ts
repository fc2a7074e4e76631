/**
 * A private redis-server for cache tests and the clamd bench: ephemeral loopback port, no
 * persistence, killed by the caller.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { RespClient } from '../../src/engine/cache-resp.js';
import { freePort } from './clamd-daemon.js';

export interface RedisServer {
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): void;
}

export async function startRedis(bin: string): Promise<RedisServer> {
  const port = await freePort();
  const proc = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'yes',
    ],
    { stdio: 'ignore' },
  );
  const client = new RespClient({ host: '127.0.0.1', port });
  const until = Date.now() + 20_000;
  try {
    for (;;) {
      try {
        if ((await client.command(['PING'])) === 'PONG') break;
      } catch (e) {
        if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode})`);
        if (Date.now() > until) throw new Error(`redis-server did not come up: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    await client.close();
  }
  return { url: `redis://127.0.0.1:${port}`, port, proc, stop: () => proc.kill('SIGKILL') };
}
