/**
 * `scangate run [-c FILE]`: start every service the configuration names (the built-in default
 * without a file), reload signatures on SIGHUP, drain and exit 0 on SIGTERM/SIGINT.
 */
import { mkdir } from 'node:fs/promises';
import type { Command } from 'commander';
import { defaultConfig, loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { startGateway } from '../gateway.js';
import { createLogger } from '../logger.js';
import { parseDuration } from '../util/units.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('start the services named by the configuration (default: HTTP(S) proxy on 127.0.0.1:8080)')
    .option('-c, --config <file>', 'YAML configuration file')
    .option('--drain <duration>', 'how long SIGTERM waits for sessions to finish', '30s')
    .action(async (opts: { config?: string; drain: string }) => {
      const config: Config = opts.config ? await loadConfigFile(opts.config) : defaultConfig();
      const logger = createLogger({ level: config.log.level });
      await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
      const gateway = await startGateway(config, logger);
      for (const line of gateway.banner()) process.stdout.write(`${line}\n`);

      process.on('SIGHUP', () => {
        gateway
          .reload()
          .catch((e: Error) => logger.error({ err: e.message }, 'reload failed; keeping the running state'));
      });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'draining');
        gateway
          .close(parseDuration(opts.drain))
          .then(() => {
            logger.flush?.();
            process.exit(0);
          })
          .catch(() => process.exit(1));
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
