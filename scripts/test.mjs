#!/usr/bin/env node
// `npm test`: type-check, make sure the Debian peers are present (installing them when we are root on
// a machine with apt, DESIGN 6), then run every test file with node:test through tsx.
// Arguments narrow the run: `npm test -- test/unit/engine` runs the files under that path.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);

function sh(cmd, cmdArgs, opts = {}) {
  const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit', cwd: root, ...opts });
  return r.status ?? 1;
}

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) collect(full, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, full));
  }
  return out;
}

const roots = args.length ? args : ['test'];
const files = roots.flatMap((r) => (r.endsWith('.test.ts') ? [r] : collect(join(root, r), [])));
if (files.length === 0) {
  console.error('no test files found under', roots.join(' '));
  process.exit(1);
}

const peersNeeded = ['clamscan', 'clamd', 'curl', 'openssl'];
const isRoot = process.getuid?.() === 0;
const missing = peersNeeded.filter((p) => !['/usr/bin', '/usr/sbin'].some((d) => existsSync(`${d}/${p}`)));
if (missing.length && isRoot && existsSync('/usr/bin/apt-get') && !process.env.SCANGATE_NO_PEER_INSTALL) {
  console.log(`peers missing (${missing.join(', ')}): running scripts/install-peers.sh`);
  if (sh('bash', ['scripts/install-peers.sh']) !== 0)
    console.error('install-peers failed; interop tests will say why');
}

if (!args.length && !process.env.SCANGATE_SKIP_TYPECHECK) {
  console.log('type-checking…');
  if (
    sh(process.execPath, [
      join(root, 'node_modules/typescript/bin/tsc'),
      '-p',
      'tsconfig.json',
      '--noEmit',
    ]) !== 0
  ) {
    console.error('type-check failed');
    process.exit(1);
  }
  // Lint and format too (biome, well under a second), so style is kept by the command CI runs.
  console.log('linting…');
  if (
    sh(process.execPath, [
      join(root, 'node_modules/@biomejs/biome/bin/biome'),
      'check',
      'src',
      'test',
      'bench',
      'scripts',
    ]) !== 0
  ) {
    console.error('lint failed (npm run lint; npx biome check --write fixes formatting)');
    process.exit(1);
  }
}

const status = sh(process.execPath, [
  '--import',
  'tsx',
  '--test',
  '--test-reporter=spec',
  `--test-concurrency=${process.env.SCANGATE_TEST_CONCURRENCY ?? 2}`,
  '--test-timeout=600000',
  ...files,
]);
process.exit(status);
