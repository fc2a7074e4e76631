/**
 * Security events (DESIGN 4.3): every verdict other than clean, and every security-relevant
 * connection event, is one JSON object. Sinks write them to the log and, when configured, to the
 * event store; producers only ever see EventSink.
 */
import type { Logger } from '../logger.js';

export type EventAction =
  | 'blocked'
  | 'partiallyblocked'
  | 'stripped'
  | 'tagged'
  | 'rejected'
  | 'allowed'
  | 'passthrough'
  | 'quarantined'
  | 'error';

export interface SecurityEvent {
  /** ISO-8601; filled in by the sink when absent. */
  time?: string;
  /** What happened: 'verdict', 'tls-failure', 'passthrough-learned', 'auth-failure', 'upstream-failure', 'splice'. */
  kind: string;
  listener: string;
  protocol: string;
  client?: string;
  server?: string;
  /** The object judged: URL, mail part, file name. */
  object?: string;
  signature?: string;
  location?: string[];
  action: EventAction;
  reason?: string;
}

export interface EventSink {
  emit(event: SecurityEvent): void;
}

/** Writes each event as one JSON line through pino (msg "event"), the default sink. */
export class LogEventSink implements EventSink {
  constructor(private readonly logger: Logger) {}
  emit(event: SecurityEvent): void {
    const e = { time: new Date().toISOString(), ...event };
    this.logger.warn({ event: e }, 'event');
  }
}

/** Keeps events in memory; used by tests and the dashboard's recent-events view. */
export class MemoryEventSink implements EventSink {
  readonly events: SecurityEvent[] = [];
  constructor(private readonly capacity = 10_000) {}
  emit(event: SecurityEvent): void {
    this.events.push({ time: new Date().toISOString(), ...event });
    if (this.events.length > this.capacity) this.events.splice(0, this.events.length - this.capacity);
  }
}

/** Sends each event to several sinks. */
export class FanoutEventSink implements EventSink {
  constructor(private readonly sinks: EventSink[]) {}
  emit(event: SecurityEvent): void {
    for (const s of this.sinks) s.emit(event);
  }
}
