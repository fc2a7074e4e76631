/**
 * One process of bench/workers' engine-alone row: loads the engine with the signature files given as
 * arguments (as a gateway worker does), prints `ready`, and on a line on stdin scans distinct 8 MB
 * objects (SHA-256 and matching, no cache) for 3 s and prints {"mbps": …, "cores": …} (cores kept busy,
 * its V8 helper threads included). Run with node --import tsx.
 */
import { randomBytes } from 'node:crypto';
import { createBuiltinScanner } from '../../src/engine/index.js';

const scanner = await createBuiltinScanner({ signatures: process.argv.slice(2), cacheEntries: 0 });
const object = randomBytes(8 * 1024 * 1024);
let n = 0;
const scanOne = async () => {
  object.writeUInt32LE(n++, 0); // new content every time: the engine scans it, as the gateway does
  const v = await scanner.scan(object, { name: 'object.bin' });
  if (v.status !== 'clean') throw new Error(`random object judged ${v.status}`);
};
for (let i = 0; i < 4; i++) await scanOne(); // JIT warm-up
console.log('ready');
process.stdin.once('data', async () => {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let scanned = 0;
  while (performance.now() - t0 < 3000) {
    await scanOne();
    scanned++;
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    JSON.stringify({ mbps: (scanned * 8) / (wall / 1000), cores: (cpu.user + cpu.system) / 1000 / wall }),
  );
  process.exit(0);
});
