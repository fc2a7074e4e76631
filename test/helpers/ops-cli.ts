/**
 * Runs the real CLI (`bin/scangate.js run -c FILE`, from source) as a child process for the
 * lifecycle tests: signals go to a real process, and its exit code and time are what an init system
 * would see. Log lines (JSON on stderr) and banner lines (stdout) can be awaited.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'scangate.js');

export interface CliProcess {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the first line (stdout or stderr) matching `re`, seen before or after the call. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  kill(): void;
}

export function startCli(configFile: string, extraArgs: string[] = []): CliProcess {
  const child = spawn(process.execPath, [BIN, 'run', '-c', configFile, ...extraArgs], {
    env: { ...process.env, SCANGATE_FROM_SOURCE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const onLine = (l: string) => {
    lines.push(l);
    if (process.env.SCANGATE_TEST_VERBOSE) process.stderr.write(`[cli] ${l}\n`);
    for (const w of [...waiters])
      if (w.re.test(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
  };
  createInterface({ input: child.stdout! }).on('line', onLine);
  createInterface({ input: child.stderr! }).on('line', onLine);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return {
    child,
    lines,
    exited,
    waitFor(re, timeoutMs = 60_000) {
      const seen = lines.find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(
              `no line matching ${re} within ${timeoutMs} ms; last lines:\n${lines.slice(-10).join('\n')}`,
            ),
          );
        }, timeoutMs);
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then(() => {
          clearTimeout(timer);
          reject(
            new Error(
              `scangate exited before a line matching ${re}; last lines:\n${lines.slice(-10).join('\n')}`,
            ),
          );
        });
      });
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** A port free right now on 127.0.0.1 (the CLI listens on what its config file names). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** True when a TCP connect to the port is refused. */
export function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

/** Writes a YAML config from lines and returns its path. */
export function writeConfig(dir: string, lines: string[]): string {
  const file = join(dir, 'scangate.yaml');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}
