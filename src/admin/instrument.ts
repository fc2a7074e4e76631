/**
 * Generic instrumentation that needs no call site in protocol code: a Scanner decorator (objects
 * scanned, verdicts, latency) and an EventSink that counts events. The gateway wraps what it hands
 * to every service, so each protocol — present or future — is measured the same way.
 */
import type { ScanContext, ScanInput, Scanner, ScannerVersion, Verdict } from '../engine/types.js';
import type { EventSink, SecurityEvent } from './events.js';
import { eventSeen, scanned } from './metrics.js';

export class MeteredScanner implements Scanner {
  constructor(readonly inner: Scanner) {}

  async scan(input: ScanInput, ctx?: ScanContext): Promise<Verdict> {
    const t0 = performance.now();
    try {
      const v = await this.inner.scan(input, ctx);
      scanned(v.status, (performance.now() - t0) / 1000);
      return v;
    } catch (e) {
      scanned('error', (performance.now() - t0) / 1000);
      throw e;
    }
  }

  version(): ScannerVersion {
    return this.inner.version();
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

export class MetricsEventSink implements EventSink {
  emit(event: SecurityEvent): void {
    eventSeen(event);
  }
}
