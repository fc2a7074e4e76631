/**
 * What every listener implementation (http, smtp, ftp, tunnel, clamd, icap) gets and gives back.
 * `scangate run` builds the shared dependencies once and starts one service per configured listener.
 */
import type { AddressInfo } from 'node:net';
import type { EventSink } from '../admin/events.js';
import type { Config, ListenerConfig } from '../config/schema.js';
import type { Scanner } from '../engine/types.js';
import type { Logger } from '../logger.js';

export interface RunningService {
  readonly name: string;
  readonly protocol: string;
  /** The bound address (port 0 in the config resolves here), or the unix socket path. */
  readonly address: AddressInfo | string;
  /** Stops accepting; resolves when existing sessions have finished or `deadlineMs` has passed. */
  close(deadlineMs?: number): Promise<void>;
  /**
   * Reload (SIGHUP): takes the next generation's config for this listener without a new service,
   * so its live connections are not drained; false when the change needs a new service. Optional:
   * services that drain cheaply (short requests) just start again.
   */
  reloadInPlace?(listener: ListenerConfig, deps: ServiceDeps): Promise<boolean>;
}

export interface ServiceDeps {
  config: Config;
  scanner: Scanner;
  logger: Logger;
  events: EventSink;
}
