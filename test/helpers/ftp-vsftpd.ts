/**
 * A real Debian vsftpd for the FTP gateway tests and bench, in inetd mode: a Node listener on an
 * ephemeral 127.0.0.1 port hands each accepted socket to a fresh `vsftpd CONFIG` process as its stdin
 * and stdout (what inetd/xinetd do), so there is no port to guess and no race for one. Anonymous
 * login with an upload folder; TLS with `require_ssl_reuse=YES` (vsftpd's default, set explicitly);
 * explicit (AUTH TLS) or implicit FTPS, or plain when `tls` is 'none'.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestCa, writePem } from './pki.js';

export interface Vsftpd {
  port: number;
  /** Files uploaded by anonymous clients land here (the FTP path /pub). */
  uploadDir: string;
  /** PEM of the CA that signed vsftpd's certificate (for tls.upstream.ca or curl --cacert). */
  caFile: string;
  /** vsftpd's own passive port range. */
  pasv: { min: number; max: number };
  /** stderr of every vsftpd process so far (diagnostics on failure). */
  log(): string;
  close(): Promise<void>;
}

export interface VsftpdOptions {
  tls: 'explicit' | 'implicit' | 'none';
  ca: TestCa;
  /** vsftpd's passive range; default a random 100-port window in 40000-44999. */
  pasv?: { min: number; max: number };
  /** Extra vsftpd.conf lines. */
  extra?: string[];
}

function ftpIds(): { uid: number; gid: number } {
  // Debian's vsftpd package creates the "ftp" user; anonymous sessions run as it.
  const id = (flag: string) => Number(execFileSync('id', [flag, 'ftp'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

export async function startVsftpd(o: VsftpdOptions): Promise<Vsftpd> {
  const dir = mkdtempSync(join(tmpdir(), 'scangate-vsftpd-'));
  chmodSync(dir, 0o755);
  const root = join(dir, 'root');
  const pub = join(root, 'pub');
  const empty = join(dir, 'empty');
  mkdirSync(root, { mode: 0o755 });
  mkdirSync(pub, { mode: 0o755 });
  mkdirSync(empty, { mode: 0o755 });
  const { uid, gid } = ftpIds();
  chownSync(pub, uid, gid);
  const cert = await o.ca.issue({
    commonName: 'localhost',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  const certFile = writePem(dir, 'vsftpd.pem', `${cert.certPem}\n${o.ca.certPem}\n`);
  const keyFile = writePem(dir, 'vsftpd.key', cert.keyPem);
  const caFile = writePem(dir, 'ca.pem', o.ca.certPem);
  const base = 40_000 + Math.floor(Math.random() * 49) * 100;
  const pasv = o.pasv ?? { min: base, max: base + 99 };
  const tlsLines =
    o.tls === 'none'
      ? ['ssl_enable=NO']
      : [
          'ssl_enable=YES',
          `implicit_ssl=${o.tls === 'implicit' ? 'YES' : 'NO'}`,
          'allow_anon_ssl=YES',
          'force_anon_logins_ssl=NO',
          'force_anon_data_ssl=NO',
          'require_ssl_reuse=YES',
          'ssl_ciphers=HIGH',
          `rsa_cert_file=${certFile}`,
          `rsa_private_key_file=${keyFile}`,
        ];
  const conf = [
    'listen=NO',
    'listen_ipv6=NO',
    'anonymous_enable=YES',
    'local_enable=NO',
    'write_enable=YES',
    'anon_upload_enable=YES',
    'anon_mkdir_write_enable=YES',
    'anon_other_write_enable=YES',
    'anon_umask=022',
    'no_anon_password=YES',
    `anon_root=${root}`,
    `secure_chroot_dir=${empty}`,
    'pasv_enable=YES',
    `pasv_min_port=${pasv.min}`,
    `pasv_max_port=${pasv.max}`,
    'port_enable=YES',
    'connect_from_port_20=NO',
    'seccomp_sandbox=NO',
    'isolate=NO',
    'isolate_network=NO',
    'use_localtime=NO',
    'xferlog_enable=NO',
    'dirmessage_enable=NO',
    'idle_session_timeout=600',
    'data_connection_timeout=300',
    ...tlsLines,
    ...(o.extra ?? []),
    '',
  ].join('\n');
  const confFile = join(dir, 'vsftpd.conf');
  writeFileSync(confFile, conf);

  let stderr = '';
  const children = new Set<ChildProcess>();
  const server: Server = createServer({ pauseOnConnect: true }, (socket: Socket) => {
    // The socket's descriptor becomes vsftpd's stdin and stdout; ours is closed right after.
    const child = spawn('/usr/sbin/vsftpd', [confFile], { stdio: [socket, socket, 'pipe'] });
    children.add(child);
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (e) => {
      stderr += `spawn: ${e.message}\n`;
    });
    child.once('exit', (code, sig) => {
      children.delete(child);
      if (code) stderr += `vsftpd exited ${code} ${sig ?? ''}\n`;
    });
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    uploadDir: pub,
    caFile,
    pasv,
    log: () => stderr,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all(
        [...children].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.kill('SIGKILL');
            }),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
