/**
 * `scangate` command line (DESIGN 4.1). Each command lives in its own module and registers itself;
 * this file only assembles them and maps errors to exit codes.
 */
import { Command } from 'commander';
import { ScangateError } from '../errors.js';
import { registerAgent } from './agent.js';
import { registerCa } from './ca.js';
import { registerQuarantine } from './quarantine.js';
import { registerRegistry } from './registry.js';
import { registerRun } from './run.js';
import { registerScan } from './scan.js';
import { registerSign } from './sign.js';
import { registerTunnel } from './tunnel.js';

const program = new Command('scangate')
  .description('Security gateway for encrypted traffic: intercept, scan, block or clean, re-encrypt.')
  .showHelpAfterError();

registerScan(program);
registerRun(program);
registerCa(program);
registerTunnel(program);
registerSign(program);
registerRegistry(program);
registerAgent(program);
registerQuarantine(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const msg = e instanceof ScangateError ? `${e.code}: ${e.message}` : ((e as Error).stack ?? String(e));
  process.stderr.write(`scangate: ${msg}\n`);
  process.exitCode = 2;
}
