/**
 * Readiness's upstream checks: can this node reach the server each listener forwards to (SMTP, FTP,
 * tunnel backend, reverse-proxy origin)? A TCP connect with a short timeout, answered from a cache
 * for a few seconds so a probe every second never becomes a connection every second per listener.
 */
import { connect } from 'node:net';
import type { ListenerConfig } from '../config/schema.js';
import { parseAddress } from '../util/units.js';

export interface UpstreamState {
  upstream: string;
  reachable: boolean;
  error?: string;
}

const CACHE_MS = 5_000;
const TIMEOUT_MS = 2_000;
const cache = new Map<string, { at: number; state: Promise<UpstreamState> }>();

/** The upstream a listener forwards every connection to, if it has a fixed one. */
export function fixedUpstream(l: ListenerConfig): string | null {
  if (l.protocol === 'http') return l.mode === 'reverse' ? l.upstream : null;
  if (l.protocol === 'smtp' || l.protocol === 'ftp' || l.protocol === 'tunnel') return l.upstream;
  return null;
}

function probe(upstream: string): Promise<UpstreamState> {
  return new Promise((resolve) => {
    let target: ReturnType<typeof parseAddress>;
    try {
      target = parseAddress(upstream);
    } catch (e) {
      return resolve({ upstream, reachable: false, error: (e as Error).message });
    }
    const s = 'path' in target ? connect(target.path) : connect(target.port, target.host);
    const done = (error?: string) => {
      s.destroy();
      resolve(error ? { upstream, reachable: false, error } : { upstream, reachable: true });
    };
    s.setTimeout(TIMEOUT_MS, () => done(`no answer within ${TIMEOUT_MS} ms`));
    s.once('connect', () => done());
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

export function checkUpstream(upstream: string): Promise<UpstreamState> {
  const hit = cache.get(upstream);
  if (hit && Date.now() - hit.at < CACHE_MS) return hit.state;
  const state = probe(upstream);
  cache.set(upstream, { at: Date.now(), state });
  if (cache.size > 1000) cache.delete(cache.keys().next().value as string);
  return state;
}
