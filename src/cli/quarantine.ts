/**
 * `scangate quarantine list [--json]` and `scangate quarantine restore ID [--to PATH] [--force]`:
 * what the agent moved away, and putting a file back (a false positive, or for analysis).
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { Quarantine } from '../agent/quarantine.js';
import { defaultConfig, loadConfigFile } from '../config/load.js';

interface Common {
  quarantine?: string;
  config?: string;
}

async function open(opts: Common): Promise<Quarantine> {
  const config = opts.config ? await loadConfigFile(opts.config) : defaultConfig();
  return new Quarantine(opts.quarantine ?? join(config.dataDir, 'quarantine'));
}

export function registerQuarantine(program: Command): void {
  const q = program.command('quarantine').description('list or restore files the agent quarantined');
  q.command('list')
    .description('one line per quarantined file: ID, time, signature, original path')
    .option('-q, --quarantine <dir>', 'quarantine folder (default: dataDir/quarantine)')
    .option('-c, --config <file>', 'YAML configuration (dataDir)')
    .option('--json', 'one JSON record per line')
    .action(async (opts: Common & { json?: boolean }) => {
      const records = await (await open(opts)).list();
      for (const r of records)
        process.stdout.write(
          opts.json ? `${JSON.stringify(r)}\n` : `${r.id}  ${r.time}  ${r.signature}  ${r.originalPath}\n`,
        );
    });
  q.command('restore')
    .description('move a quarantined file back to where it was (or --to PATH)')
    .argument('<id>', 'the ID shown by quarantine list')
    .option('-q, --quarantine <dir>', 'quarantine folder (default: dataDir/quarantine)')
    .option('-c, --config <file>', 'YAML configuration (dataDir)')
    .option('--to <path>', 'restore to this path instead')
    .option('--force', 'overwrite a file that now exists at the destination')
    .action(async (id: string, opts: Common & { to?: string; force?: boolean }) => {
      const dest = await (await open(opts)).restore(id, { to: opts.to, force: opts.force });
      process.stdout.write(`restored ${id} to ${dest}\n`);
    });
}
