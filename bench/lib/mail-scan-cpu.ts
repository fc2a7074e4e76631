/**
 * Engine micro-benchmark for the SMTP bench's cost per message: CPU milliseconds the builtin engine
 * spends scanning one ~100 KB mail (a text part and a base64 attachment, the message bench/smtp.ts
 * sends), every message unique so the verdict cache never answers. Run directly (not part of
 * `npm run bench`, it has no peer): `node --import tsx bench/lib/mail-scan-cpu.ts`, add
 * `--cpu-prof` to see where the time goes. MAIL_KB, MAILS, ROUNDS tune it.
 */
import { createBuiltinScanner } from '../../src/engine/index.js';
import { benchMail } from './bench-mail.js';

const MAIL_KB = Number(process.env.MAIL_KB ?? 100);
const MAILS = Number(process.env.MAILS ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);

const scanner = await createBuiltinScanner({ cacheEntries: 1 });
const { template, serialAt } = benchMail(MAIL_KB);
let serial = 0;
const mails = Array.from({ length: MAILS }, () => {
  const m = Buffer.from(template);
  m.write((serial++).toString(36).padStart(12, '0'), serialAt, 'latin1');
  return m;
});

async function round(): Promise<number> {
  const c0 = process.cpuUsage();
  for (const m of mails) {
    const v = await scanner.scan(m, { name: 'mail' });
    if (v.status !== 'clean') throw new Error(`unexpected verdict ${JSON.stringify(v)}`);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / MAILS;
}

await round(); // warm-up (JIT)
const perMail: number[] = [];
for (let i = 0; i < ROUNDS; i++) perMail.push(await round());
perMail.sort((a, b) => a - b);
const median = perMail[Math.floor(perMail.length / 2)]!;
console.log(
  `engine CPU per ${Math.round(template.length / 1024)} KB mail: median ${median.toFixed(3)} ms ` +
    `(rounds: ${perMail.map((x) => x.toFixed(3)).join(', ')}; ${MAILS} unique mails per round)`,
);
