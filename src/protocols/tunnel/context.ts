/** What every tunnel session of one listener shares. */
import type { EventAction, EventSink } from '../../admin/events.js';
import type { TunnelListenerConfig } from '../../config/schema.js';
import type { Scanner } from '../../engine/types.js';
import type { Logger } from '../../logger.js';
import type { BackendPool } from './backend-pool.js';

export interface TunnelContext {
  cfg: TunnelListenerConfig;
  log: Logger;
  events: EventSink;
  scanner: Scanner;
  backend: { host: string; port: number };
  /** Message mode only. */
  pool: BackendPool | null;
  /** Aborted when the listener shuts down. */
  shutdown: AbortSignal;
}

export interface TunnelEvent {
  kind: string;
  action: EventAction;
  reason: string;
  client?: string;
  object?: string;
  signature?: string;
}

export function emitEvent(ctx: TunnelContext, e: TunnelEvent): void {
  ctx.events.emit({
    listener: ctx.cfg.name,
    protocol: 'tunnel',
    server: `${ctx.backend.host}:${ctx.backend.port}`,
    ...e,
  });
}
