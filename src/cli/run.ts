/**
 * `scangate run [-c FILE]`: start every service the configuration names (the built-in default
 * without a file). SIGHUP re-reads the file and reloads configuration, certificates and signatures
 * (a file that does not load keeps the running state); SIGTERM/SIGINT stop accepting, let sessions
 * finish until the drain deadline, and exit 0. With `workers: auto|N>1` this process becomes the
 * cluster primary (src/cluster/) and the same command runs in each worker.
 */
import cluster from 'node:cluster';
import { mkdir } from 'node:fs/promises';
import type { Command } from 'commander';
import { defaultConfig, loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { type Gateway, type GatewayOptions, startGateway } from '../gateway.js';
import { createLogger, type Logger } from '../logger.js';
import { tuneHeapGrowth } from '../util/heap.js';
import { parseDuration } from '../util/units.js';

export interface RunOptions {
  config?: string;
  drain?: string;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('start the services named by the configuration (default: HTTP(S) proxy on 127.0.0.1:8080)')
    .option('-c, --config <file>', 'YAML configuration file')
    .option('--drain <duration>', 'how long SIGTERM waits for sessions to finish (default: drain.timeout)')
    .action(async (opts: RunOptions) => {
      const load = (): Promise<Config> =>
        opts.config ? loadConfigFile(opts.config) : Promise.resolve(defaultConfig());
      const config = await load();
      if (opts.drain) config.drain.timeout = parseDuration(opts.drain);
      const logger = createLogger({ level: config.log.level });
      if (cluster.isWorker) {
        const { runWorker } = await import('../cluster/worker.js');
        return runWorker(config, logger, load);
      }
      await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
      const { workerCount } = await import('../cluster/count.js');
      const workers = workerCount(config.workers);
      if (workers > 1) {
        const { runPrimary } = await import('../cluster/primary.js');
        return runPrimary(config, logger, load, workers);
      }
      const gateway = await startGateway(config, logger);
      tuneHeapGrowth();
      for (const line of gateway.banner()) process.stdout.write(`${line}\n`);
      handleSignals(gateway, logger, load, opts);
    });
}

/** SIGHUP → reload from the file; SIGTERM/SIGINT → drain and exit 0 (1 if closing itself failed). */
export function handleSignals(
  gateway: Pick<Gateway, 'reload' | 'close'>,
  logger: Logger,
  load: () => Promise<Config>,
  opts: RunOptions,
): void {
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading configuration, certificates and signatures');
    load()
      .then((next) => {
        if (opts.drain) next.drain.timeout = parseDuration(opts.drain);
        return gateway.reload(next);
      })
      .then(() => tuneHeapGrowth())
      .catch((e: Error) => logger.error({ err: e.message }, 'reload failed; keeping the running state'));
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining: no new connections; sessions finish until the deadline');
    gateway
      .close()
      .then(() => {
        logger.info('drained; exiting');
        logger.flush?.();
        process.exit(0);
      })
      .catch((e: Error) => {
        logger.error({ err: e.message }, 'close failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

export type { GatewayOptions };
