/**
 * Hosts whose TLS we do not open: the operator's list (tls.passthrough: banking, update services,
 * pinned apps) and hosts learned at run time because their client rejected our certificate (a pinned
 * app: mitmproxy #5063/#8083 ask for exactly this). Learned entries expire after a TTL so a one-off
 * failure, or a client that later trusts our CA, does not exempt a host forever.
 *
 * Patterns: "example.com" matches that host only; "*.example.com" matches any subdomain (any depth)
 * but not example.com itself; ".example.com" matches example.com and every subdomain. Case and a
 * trailing dot are ignored. IP literals match exactly.
 */
import type { EventSink } from '../admin/events.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';

interface Rule {
  kind: 'exact' | 'subdomains' | 'domain-and-subdomains';
  name: string;
}

function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  return h.replace(/\.$/, '');
}

export function parsePassthroughPattern(pattern: string): Rule {
  const p = normalizeHost(pattern);
  let rule: Rule;
  if (p.startsWith('*.')) rule = { kind: 'subdomains', name: p.slice(2) };
  else if (p.startsWith('.')) rule = { kind: 'domain-and-subdomains', name: p.slice(1) };
  else rule = { kind: 'exact', name: p };
  if (!rule.name || rule.name.includes('*') || /\s/.test(rule.name))
    throw new ConfigError(
      'tls.passthrough',
      `"${pattern}" is not a host pattern (use host, *.domain or .domain)`,
    );
  return rule;
}

function matches(rule: Rule, host: string): boolean {
  switch (rule.kind) {
    case 'exact':
      return host === rule.name;
    case 'subdomains':
      return host.endsWith(`.${rule.name}`);
    case 'domain-and-subdomains':
      return host === rule.name || host.endsWith(`.${rule.name}`);
  }
}

export interface LearnContext {
  listener?: string;
  protocol?: string;
  client?: string;
  server?: string;
}

export class PassthroughPolicy {
  private readonly rules: Rule[];
  private readonly learned = new Map<string, { until: number; reason: string }>();
  private readonly now: () => number;
  /** Most learned hosts kept; the oldest is forgotten first. */
  private readonly maxLearned: number;

  constructor(
    patterns: string[],
    readonly ttlMs: number,
    private readonly logger?: Logger,
    readonly events?: EventSink,
    opts: { now?: () => number; maxLearned?: number } = {},
  ) {
    this.rules = patterns.map(parsePassthroughPattern);
    this.now = opts.now ?? Date.now;
    this.maxLearned = opts.maxLearned ?? 10_000;
  }

  shouldPassthrough(host: string): boolean {
    if (!host) return false;
    const h = normalizeHost(host);
    if (this.rules.some((r) => matches(r, h))) return true;
    const entry = this.learned.get(h);
    if (!entry) return false;
    if (entry.until <= this.now()) {
      this.learned.delete(h);
      this.logger?.info({ host: h }, 'automatic passthrough expired: intercepting again');
      return false;
    }
    return true;
  }

  /** Exempts `host` for ttlMs; emits a 'passthrough-learned' event when this policy has a sink. */
  learn(host: string, reason: string, ctx: LearnContext = {}): void {
    if (!host || !(this.ttlMs > 0)) return;
    const h = normalizeHost(host);
    const fresh = !this.learned.has(h);
    this.learned.delete(h);
    this.learned.set(h, { until: this.now() + this.ttlMs, reason });
    while (this.learned.size > this.maxLearned)
      this.learned.delete(this.learned.keys().next().value as string);
    this.logger?.warn(
      { host: h, reason, ttlMs: this.ttlMs, ...ctx },
      fresh ? 'client rejected our certificate: passing this host through' : 'passthrough renewed',
    );
    this.events?.emit({
      kind: 'passthrough-learned',
      listener: ctx.listener ?? 'tls',
      protocol: ctx.protocol ?? 'tls',
      ...(ctx.client ? { client: ctx.client } : {}),
      server: ctx.server ?? h,
      object: h,
      action: 'passthrough',
      reason,
    });
  }

  /** Learned hosts still in force, with their expiry (dashboard, tests). */
  learnedHosts(): { host: string; until: Date; reason: string }[] {
    const now = this.now();
    return [...this.learned]
      .filter(([, e]) => e.until > now)
      .map(([host, e]) => ({ host, until: new Date(e.until), reason: e.reason }));
  }

  forget(host: string): void {
    this.learned.delete(normalizeHost(host));
  }
}
