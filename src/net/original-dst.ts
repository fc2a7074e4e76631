/**
 * Transparent mode: the destination a client really dialled, for connections the kernel redirected to
 * us with iptables `REDIRECT` (reference notes §4). Netfilter keeps it in conntrack and hands it out
 * through getsockopt(SOL_IP, SO_ORIGINAL_DST) — IPv6: getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) —
 * as a struct sockaddr_in / sockaddr_in6. Node has no getsockopt (nodejs/node#22994), so libc's is
 * called through koffi (prebuilt FFI, no compiler) on the socket's file descriptor.
 *
 * For TPROXY the accepted socket's local address already is the original destination; no call needed.
 */
import { createRequire } from 'node:module';
import { isIP, type Socket } from 'node:net';

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** linux/netfilter_ipv4.h SO_ORIGINAL_DST and linux/netfilter_ipv6/ip6_tables.h IP6T_SO_ORIGINAL_DST. */
const SO_ORIGINAL_DST = 80;
const IP6T_SO_ORIGINAL_DST = 80;
const AF_INET = 2;
const AF_INET6 = 10;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: number[]) => number;

let getsockopt: GetSockOpt | null | undefined;

/** Loads libc's getsockopt once; null when not on Linux or koffi cannot load. */
function libcGetsockopt(): GetSockOpt | null {
  if (getsockopt !== undefined) return getsockopt;
  getsockopt = null;
  if (process.platform !== 'linux') return null;
  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    // int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen);
    const fn = libc.func('int getsockopt(int, int, int, _Out_ uint8_t *, _Inout_ uint32_t *)');
    getsockopt = (fd, level, name, value, length) => fn(fd, level, name, value, length) as number;
  } catch {
    getsockopt = null;
  }
  return getsockopt;
}

/** The file descriptor under a net.Socket (undocumented `_handle.fd`, stable on Linux; -1 otherwise). */
function fdOf(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
  return typeof handle?.fd === 'number' ? handle.fd : -1;
}

/** Decodes a struct sockaddr_in / sockaddr_in6 (port and address in network byte order). */
export function decodeSockaddr(buf: Buffer): { address: string; port: number } | null {
  if (buf.length < 8) return null;
  const family = buf.readUInt16LE(0); // sa_family_t is host order (little-endian on x86/arm)
  const port = buf.readUInt16BE(2);
  if (family === AF_INET) return { address: [...buf.subarray(4, 8)].join('.'), port };
  if (family === AF_INET6 && buf.length >= 24) {
    const words: string[] = [];
    for (let i = 8; i < 24; i += 2) words.push(buf.readUInt16BE(i).toString(16));
    return { address: compressIpv6(words), port };
  }
  return null;
}

function compressIpv6(words: string[]): string {
  // Longest run of zero words becomes "::" (RFC 5952 §4.2).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < words.length; ) {
    if (words[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < words.length && words[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const text =
    best < 0
      ? words.join(':')
      : `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(text);
  if (mapped) {
    const hi = Number.parseInt(mapped[1]!, 16);
    const lo = Number.parseInt(mapped[2]!, 16);
    return `::ffff:${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return text;
}

/**
 * The pre-REDIRECT destination of an accepted connection, or null when the connection was not
 * redirected (the answer equals our own local address), the call fails, or we are not on Linux.
 */
export function getOriginalDestination(socket: Socket): { address: string; port: number } | null {
  const call = libcGetsockopt();
  const fd = fdOf(socket);
  if (!call || fd < 0) return null;
  const local = socket.localAddress ?? '';
  // Which syscall: by the address family the connection actually uses. An IPv4 client on a dual-stack
  // socket shows as ::ffff:a.b.c.d and its conntrack entry is IPv4 (mitmproxy's platform/linux.py does
  // the same check; the wrong call only fails with ENOENT here, but there is no point making it).
  const v4 = isIP(local) === 4 || /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(local);
  const buf = Buffer.alloc(v4 ? 16 : 28);
  const length = [buf.length];
  const rc = v4
    ? call(fd, SOL_IP, SO_ORIGINAL_DST, buf, length)
    : call(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, buf, length);
  if (rc !== 0) return null;
  const dst = decodeSockaddr(buf.subarray(0, length[0]));
  if (!dst) return null;
  const localPlain = local.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (dst.address === localPlain && dst.port === socket.localPort) return null;
  return dst;
}
