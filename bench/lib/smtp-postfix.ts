/**
 * A private Postfix instance for bench/smtp.ts: the MTA an SMTP gateway actually sits in front of.
 * Its own config and queue in a temp folder, listening on 127.0.0.1:PORT, accepting mail for
 * example.net from loopback and handing every queued message to the discard transport. smtpd,
 * cleanup (which fsyncs the queue file before the 250, RFC 5321 §6.1), qmgr and discard all run,
 * as they would in production; only the final delivery is a no-op. Needs root (Postfix's master).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export interface Postfix {
  port: number;
  /** The master process (its children are the smtpd, cleanup, qmgr, … processes). */
  pid: number;
  stop(): void;
}

const SERVICES = [
  'pickup    unix  n - n 60 1 pickup',
  'cleanup   unix  n - n - 0 cleanup',
  'qmgr      unix  n - n 300 1 qmgr',
  'rewrite   unix  - - n - - trivial-rewrite',
  'bounce    unix  - - n - 0 bounce',
  'defer     unix  - - n - 0 bounce',
  'trace     unix  - - n - 0 bounce',
  'verify    unix  - - n - 1 verify',
  'flush     unix  n - n 1000? 0 flush',
  'proxymap  unix  - - n - - proxymap',
  'showq     unix  n - n - - showq',
  'error     unix  - - n - - error',
  'retry     unix  - - n - - error',
  'discard   unix  - - n - - discard',
  'anvil     unix  - - n - 1 anvil',
  'scache    unix  - - n - 1 scache',
  'postlog   unix-dgram n - n - 1 postlogd',
];

/** Null when Postfix is not installed or we are not root (the row is then skipped, saying why). */
export function postfixUnavailable(postfixBin: string | null): string | null {
  if (!postfixBin) return 'postfix not installed (Debian package postfix)';
  if (userInfo().uid !== 0) return 'postfix needs root to start its master';
  return null;
}

export async function startPostfix(postfixBin: string, port: number): Promise<Postfix> {
  // Its own folder, traversable by the postfix user (a mkdtemp folder is 0700).
  const dir = mkdtempSync(join(tmpdir(), 'scangate-bench-postfix-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'queue'), { recursive: true });
  mkdirSync(join(dir, 'data'), { recursive: true });
  const uid = Number(execFileSync('id', ['-u', 'postfix'], { encoding: 'utf8' }).trim());
  chownSync(join(dir, 'data'), uid, -1);
  writeFileSync(
    join(dir, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${dir}/queue`,
      `data_directory = ${dir}/data`,
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'myhostname = mx.bench.example',
      'mydomain = bench.example',
      'myorigin = bench.example',
      'mydestination =',
      'mynetworks = 127.0.0.0/8',
      'relay_domains = example.net',
      'default_transport = discard:bench',
      'relay_transport = discard:bench',
      'local_transport = discard:bench',
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      'alias_maps =',
      'alias_database =',
      'message_size_limit = 104857600',
      'smtputf8_enable = no',
      `maillog_file = ${dir}/maillog`,
      `maillog_file_prefixes = ${dir}`,
      'syslog_name = postfix-bench',
      'default_process_limit = 200',
      'smtpd_client_connection_count_limit = 0',
      'smtpd_client_connection_rate_limit = 0',
      'smtpd_client_message_rate_limit = 0',
      'smtpd_client_recipient_rate_limit = 0',
      'biff = no',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'master.cf'),
    [`127.0.0.1:${port} inet n - n - - smtpd`, ...SERVICES, ''].join('\n'),
  );
  try {
    execFileSync(postfixBin, ['-c', dir, 'start'], { stdio: 'ignore' });
  } catch (e) {
    throw new Error(`postfix did not start; see ${dir}/maillog`, { cause: e });
  }
  const pid = Number(readFileSync(join(dir, 'queue/pid/master.pid'), 'utf8').trim());
  return {
    port,
    pid,
    stop: () => {
      try {
        execFileSync(postfixBin, ['-c', dir, 'abort'], { stdio: 'ignore' });
      } catch {
        // already gone
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
