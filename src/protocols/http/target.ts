/**
 * The four request-target forms (RFC 9112 §3.2): origin (`/path?q`), absolute (`http://h:p/path`),
 * authority (`host:port`, CONNECT only) and asterisk (`*`, OPTIONS only).
 */

export type RequestTarget =
  | { form: 'origin'; path: string }
  | { form: 'absolute'; scheme: 'http' | 'https'; host: string; port: number; path: string }
  | { form: 'authority'; host: string; port: number }
  | { form: 'asterisk' };

/** host / [v6] / reg-name followed by :port; returns null when malformed. */
export function parseAuthority(
  authority: string,
  defaultPort?: number,
): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9\-._~%!$&'()*+,;=]+))(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return null;
  const host = (m[1] ?? m[2]!).toLowerCase();
  if (m[3] === undefined) {
    if (defaultPort === undefined) return null;
    return { host, port: defaultPort };
  }
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host, port };
}

export function parseRequestTarget(method: string, target: string): RequestTarget | null {
  if (method === 'CONNECT') {
    const a = parseAuthority(target);
    return a ? { form: 'authority', ...a } : null;
  }
  if (target === '*') return method === 'OPTIONS' ? { form: 'asterisk' } : null;
  if (target.startsWith('/')) return { form: 'origin', path: target };
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/.exec(target);
  if (!m) return null;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return null;
  // userinfo is deprecated in http(s) URIs (RFC 9110 §4.2.4) and a phishing vector: refuse it.
  if (m[2]!.includes('@')) return null;
  const a = parseAuthority(m[2]!, scheme === 'https' ? 443 : 80);
  if (!a) return null;
  let path = m[3] || '/';
  if (path.startsWith('?')) path = `/${path}`;
  return { form: 'absolute', scheme, host: a.host, port: a.port, path };
}

/** `host` or `host:port` as a Host header value / URL authority (brackets for IPv6, default port omitted). */
export function formatAuthority(host: string, port: number, defaultPort?: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return port === defaultPort ? h : `${h}:${port}`;
}
