/**
 * Process-wide Prometheus metrics. Protocol code never builds metrics itself: it calls the few
 * functions below (most counting happens generically — connections and bytes in net/listener.ts,
 * scans in MeteredScanner, events in MetricsEventSink), so a new protocol is counted without edits.
 *
 * Under `workers: N` each worker fills its own registry and the primary sums them with prom-client's
 * AggregatorRegistry (see src/cluster/), so every metric here declares how it aggregates.
 */
import type { Socket } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'scangate_' });

const listenerProtocols = new Map<string, string>();

/** Records which protocol a listener speaks, so connection metrics carry both labels. */
export function describeListener(name: string, protocol: string): void {
  listenerProtocols.set(name, protocol);
}

function protocolOf(listener: string): string {
  return listenerProtocols.get(listener) ?? 'unknown';
}

const connectionsOpen = new Gauge({
  name: 'scangate_connections_open',
  help: 'Client connections currently open, per listener',
  labelNames: ['listener', 'protocol'] as const,
  registers: [registry],
  collect: flushOpenConnectionBytes,
});
const connectionsTotal = new Counter({
  name: 'scangate_connections_total',
  help: 'Client connections accepted, per listener',
  labelNames: ['listener', 'protocol'] as const,
  registers: [registry],
});
const connectionsRefused = new Counter({
  name: 'scangate_connections_refused_total',
  help: 'Client connections reset on arrival (reason: allow-list, limit)',
  labelNames: ['listener', 'protocol', 'reason'] as const,
  registers: [registry],
});
const bytesReceived = new Counter({
  name: 'scangate_client_bytes_received_total',
  help: 'Bytes received from clients on the wire (TLS included), per listener',
  labelNames: ['listener', 'protocol'] as const,
  registers: [registry],
});
const bytesSent = new Counter({
  name: 'scangate_client_bytes_sent_total',
  help: 'Bytes sent to clients on the wire (TLS included), per listener',
  labelNames: ['listener', 'protocol'] as const,
  registers: [registry],
});

interface Tracked {
  listener: string;
  protocol: string;
  read: number;
  written: number;
}
const open = new Map<Socket, Tracked>();

function flushBytes(socket: Socket, t: Tracked): void {
  const read = socket.bytesRead;
  const written = socket.bytesWritten;
  if (read > t.read) bytesReceived.inc({ listener: t.listener, protocol: t.protocol }, read - t.read);
  if (written > t.written) bytesSent.inc({ listener: t.listener, protocol: t.protocol }, written - t.written);
  t.read = read;
  t.written = written;
}

/** Long-lived connections report their bytes at every scrape, not only when they close. */
function flushOpenConnectionBytes(): void {
  for (const [socket, t] of open) flushBytes(socket, t);
}

/** Called by the listener for every accepted client connection. */
export function trackConnection(listener: string, socket: Socket): void {
  const protocol = protocolOf(listener);
  const t: Tracked = { listener, protocol, read: 0, written: 0 };
  open.set(socket, t);
  connectionsTotal.inc({ listener, protocol });
  connectionsOpen.inc({ listener, protocol });
  socket.once('close', () => {
    flushBytes(socket, t);
    open.delete(socket);
    connectionsOpen.dec({ listener, protocol });
  });
}

export function connectionRefused(listener: string, reason: 'allow-list' | 'limit'): void {
  connectionsRefused.inc({ listener, protocol: protocolOf(listener), reason });
}

const objectsScanned = new Counter({
  name: 'scangate_objects_scanned_total',
  help: 'Objects given to the scanning engine (bodies, messages, parts, files)',
  registers: [registry],
});
const verdicts = new Counter({
  name: 'scangate_verdicts_total',
  help: 'Scan verdicts by result (clean, infected, error)',
  labelNames: ['result'] as const,
  registers: [registry],
});
const scanSeconds = new Histogram({
  name: 'scangate_scan_duration_seconds',
  help: 'Time from handing an object to the engine to its verdict (includes receiving a streamed object)',
  labelNames: ['result'] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
  registers: [registry],
});

export function scanned(result: 'clean' | 'infected' | 'error', seconds: number): void {
  objectsScanned.inc();
  verdicts.inc({ result });
  scanSeconds.observe({ result }, seconds);
}

const events = new Counter({
  name: 'scangate_events_total',
  help: 'Security events (non-clean verdicts, TLS failures, passthrough, auth and upstream failures)',
  labelNames: ['listener', 'protocol', 'kind', 'action'] as const,
  registers: [registry],
});
const upstreamFailures = new Counter({
  name: 'scangate_upstream_failures_total',
  help: 'Connections or requests that failed because the real server was unreachable or untrusted',
  labelNames: ['listener', 'protocol'] as const,
  registers: [registry],
});

export function eventSeen(e: { listener: string; protocol: string; kind: string; action: string }): void {
  events.inc({ listener: e.listener, protocol: e.protocol, kind: e.kind, action: e.action });
  if (e.kind === 'upstream-failure') upstreamFailures.inc({ listener: e.listener, protocol: e.protocol });
}

const tlsHandshakes = new Counter({
  name: 'scangate_tls_handshakes_total',
  help: 'TLS handshakes completed, per listener and side (client: we are the server; upstream: we are the client)',
  labelNames: ['listener', 'side'] as const,
  registers: [registry],
});
const tlsFailures = new Counter({
  name: 'scangate_tls_handshake_failures_total',
  help: 'TLS handshakes that failed, per listener, side and reason (an error code)',
  labelNames: ['listener', 'side', 'reason'] as const,
  registers: [registry],
});

/** A bounded label from an error: its code when it looks like one, else "other". */
export function reasonOf(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,63}$/.test(code)) return code;
  // OpenSSL says "SSL alert number 48" and "tlsv1 alert unknown ca": the name is the label.
  const alert = [...((e as Error)?.message ?? '').matchAll(/alert ([a-z ]{3,40})/gi)].find(
    (m) => !/^number/i.test(m[1]!),
  );
  if (alert) return `alert_${alert[1]!.trim().replace(/ +/g, '_').toLowerCase()}`;
  if (/timeout|timed out|within/i.test((e as Error)?.message ?? '')) return 'timeout';
  return 'other';
}

/** Counts one TLS handshake: completed, or failed with `error` (labelled by reasonOf). */
export function countTls(listener: string, side: 'client' | 'upstream', error?: unknown): void {
  if (error === undefined) tlsHandshakes.inc({ listener, side });
  else tlsFailures.inc({ listener, side, reason: reasonOf(error) });
}

/** Counts one TLS handshake by its outcome; returns the promise unchanged so a call site stays one line. */
export function observeTls<T>(
  listener: string,
  side: 'client' | 'upstream',
  handshake: Promise<T>,
): Promise<T> {
  return handshake.then(
    (v) => {
      countTls(listener, side);
      return v;
    },
    (e: unknown) => {
      countTls(listener, side, e);
      throw e;
    },
  );
}

export const reloads = new Counter({
  name: 'scangate_reloads_total',
  help: 'Configuration reloads (SIGHUP) by result',
  labelNames: ['result'] as const,
  registers: [registry],
});

/** Gauges whose value is read at scrape time from a live object (engine, cache, spool). */
export function gauge(
  name: string,
  help: string,
  read: () => number | Promise<number>,
  aggregator: 'sum' | 'max' | 'average' = 'sum',
): Gauge {
  const existing = registry.getSingleMetric(name);
  if (existing) registry.removeSingleMetric(name);
  return new Gauge({
    name,
    help,
    registers: [registry],
    aggregator,
    async collect() {
      this.set(await read());
    },
  });
}
