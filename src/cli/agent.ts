/**
 * `scangate agent --watch DIR… [--server ADDR] [--quarantine DIR] [--initial-scan] [-c FILE]`: the
 * on-access agent. Scans with the local engine (the configuration's `engine`, plus `--db`) or, with
 * `--server`, through a clamd-protocol daemon (scangate's or ClamAV's). Prints one line per detection
 * (`PATH: NAME FOUND (quarantined as ID)`); stops on SIGTERM/SIGINT.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { Agent } from '../agent/agent.js';
import { Quarantine } from '../agent/quarantine.js';
import { defaultConfig, loadConfigFile } from '../config/load.js';
import { ClamdScanner } from '../engine/backends/clamd.js';
import { createScanner } from '../engine/index.js';
import type { Scanner } from '../engine/types.js';
import { createLogger } from '../logger.js';

interface AgentCliOptions {
  watch: string[];
  server?: string;
  quarantine?: string;
  initialScan?: boolean;
  config?: string;
  db: string[];
  settle: string;
  concurrency: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('watch folders, scan files as they are written, move infected ones to quarantine')
    .requiredOption('-w, --watch <dir...>', 'folders to watch, recursively')
    .option('-s, --server <address>', 'scan through a clamd-protocol daemon (host:port or unix socket path)')
    .option('-q, --quarantine <dir>', 'quarantine folder (default: dataDir/quarantine)')
    .option('--initial-scan', 'scan every file already present when starting')
    .option('-c, --config <file>', 'YAML configuration (engine, dataDir)')
    .option('--db <path>', 'extra signature file or folder for the local engine (repeatable)', collect, [])
    .option('--settle <ms>', 'quiet time before a written file is scanned', '250')
    .option('--concurrency <n>', 'scans at once', '4')
    .action(async (opts: AgentCliOptions) => {
      const config = opts.config ? await loadConfigFile(opts.config) : defaultConfig();
      const logger = createLogger({ level: config.log.level });
      const scanner: Scanner = opts.server
        ? new ClamdScanner({ address: opts.server })
        : await createScanner(
            { ...config.engine, signatures: [...config.engine.signatures, ...opts.db] },
            { dataDir: config.dataDir, logger },
          );
      const quarantine = new Quarantine(opts.quarantine ?? join(config.dataDir, 'quarantine'));
      const agent = new Agent({
        roots: opts.watch,
        scanner,
        quarantine,
        logger,
        initialScan: opts.initialScan,
        settleMs: Number(opts.settle),
        concurrency: Number(opts.concurrency),
        onResult: (r) => {
          if (r.verdict.status !== 'infected') return;
          const what = r.quarantined
            ? `quarantined as ${r.quarantined.id}`
            : `NOT quarantined: ${r.quarantineError ?? 'no quarantine'}`;
          process.stdout.write(`${r.path}: ${r.verdict.signature} FOUND (${what})\n`);
        },
      });
      await agent.start();
      const engine = opts.server ? `clamd at ${opts.server}` : scanner.version().engine;
      process.stdout.write(
        `scangate agent: watching ${opts.watch.join(', ')} (${agent.stats.watchedDirs} folders), engine ${engine}, quarantine ${quarantine.dir}\n`,
      );
      const stop = () => {
        agent.close();
        void scanner.close?.().finally(() => process.exit(0));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
}
