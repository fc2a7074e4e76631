/**
 * The dashboard's one-glance numbers, read from the same metrics /metrics exposes (so the page and
 * Prometheus never disagree), plus per-listener state.
 */
import type { Registry } from 'prom-client';
import type { AdminStatus } from './server.js';

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

export async function overview(reg: Registry, status: AdminStatus) {
  const json = (await reg.getMetricsAsJSON()) as unknown as { name: string; values: MetricValue[] }[];
  const byName = new Map(json.map((m) => [m.name, m.values]));
  const sum = (name: string, where: (l: MetricValue['labels']) => boolean = () => true) =>
    (byName.get(name) ?? [])
      .filter((v) => !v.metricName || v.metricName === name)
      .filter((v) => where(v.labels))
      .reduce((a, v) => a + v.value, 0);
  const of = (listener: string) => (l: MetricValue['labels']) => l.listener === listener;

  return {
    time: new Date().toISOString(),
    ready: status.ready,
    engine: status.engine,
    workers: status.workers,
    counters: {
      connectionsOpen: sum('scangate_connections_open'),
      connections: sum('scangate_connections_total'),
      bytesIn: sum('scangate_client_bytes_received_total'),
      bytesOut: sum('scangate_client_bytes_sent_total'),
      objectsScanned: sum('scangate_objects_scanned_total'),
      clean: sum('scangate_verdicts_total', (l) => l.result === 'clean'),
      infected: sum('scangate_verdicts_total', (l) => l.result === 'infected'),
      errors: sum('scangate_verdicts_total', (l) => l.result === 'error'),
      events: sum('scangate_events_total'),
      tlsHandshakes: sum('scangate_tls_handshakes_total'),
      tlsFailures: sum('scangate_tls_handshake_failures_total'),
      upstreamFailures: sum('scangate_upstream_failures_total'),
      cacheHitRatio: sum('scangate_verdict_cache_hit_ratio'),
      spoolBytes: sum('scangate_spool_bytes'),
    },
    listeners: status.listeners.map((l) => ({
      ...l,
      open: sum('scangate_connections_open', of(l.name)),
      connections: sum('scangate_connections_total', of(l.name)),
      bytesIn: sum('scangate_client_bytes_received_total', of(l.name)),
      bytesOut: sum('scangate_client_bytes_sent_total', of(l.name)),
      events: sum('scangate_events_total', of(l.name)),
    })),
    summaries: status.summaries,
  };
}
