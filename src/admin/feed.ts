/**
 * The live event feed behind the dashboard's server-sent events: keeps the latest events in memory
 * and pushes each new one to subscribers. A subscriber that cannot keep up is dropped rather than
 * buffered without bound.
 */
import type { EventSink, SecurityEvent } from './events.js';

export type FeedListener = (event: SecurityEvent) => void;

export class EventFeed implements EventSink {
  private readonly recentEvents: SecurityEvent[] = [];
  private readonly listeners = new Set<FeedListener>();

  constructor(private readonly capacity = 200) {}

  emit(event: SecurityEvent): void {
    const e = event.time ? event : { time: new Date().toISOString(), ...event };
    this.recentEvents.push(e);
    if (this.recentEvents.length > this.capacity) this.recentEvents.shift();
    for (const l of this.listeners) l(e);
  }

  /** Newest last. */
  recent(n = this.capacity): SecurityEvent[] {
    return this.recentEvents.slice(-n);
  }

  subscribe(listener: FeedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get subscribers(): number {
    return this.listeners.size;
  }
}
