/**
 * What the ICAP server offers (RFC 3507 §4.10): its services, the OPTIONS answer for each, and the
 * ISTag that names the signature database, so a client's cache of adapted objects goes stale the
 * moment the database changes (§4.7).
 *
 * DESIGN 4.3 names the service `avscan` (REQMOD and RESPMOD). RFC 3507 §4.10.2 prefers one method
 * per service URI, and Squid checks the method against its vectoring point, so `reqmod` and
 * `respmod` are offered too, each with its single method.
 */
import { createHash } from 'node:crypto';
import type { IcapListenerConfig } from '../../config/schema.js';
import type { ScannerVersion } from '../../engine/types.js';
import type { RawHeaders } from '../http/headers.js';
import type { IcapMethod } from './messages.js';

export const ICAP_SERVICES: Readonly<Record<string, readonly IcapMethod[]>> = {
  avscan: ['RESPMOD', 'REQMOD'],
  respmod: ['RESPMOD'],
  reqmod: ['REQMOD'],
};

export function serviceMethods(service: string): readonly IcapMethod[] | null {
  return Object.hasOwn(ICAP_SERVICES, service) ? ICAP_SERVICES[service]! : null;
}

let lastVersion: ScannerVersion | null = null;
let lastTag = '';

/**
 * The ISTag: a quoted string of at most 32 characters (§4.7) derived from the engine and database
 * version, so it changes exactly when the signatures do.
 */
export function istagFor(v: ScannerVersion): string {
  if (
    lastVersion &&
    lastVersion.engine === v.engine &&
    lastVersion.databaseVersion === v.databaseVersion &&
    lastVersion.signatures === v.signatures
  )
    return lastTag;
  const digest = createHash('sha256')
    .update(`${v.engine}\0${v.databaseVersion}\0${v.signatures}`)
    .digest('hex')
    .slice(0, 24);
  lastVersion = { ...v };
  lastTag = `"sg-${digest}"`;
  return lastTag;
}

/** The OPTIONS fields for `service` (Encapsulated and ISTag are added by the serializer). */
export function optionsFields(service: string, cfg: IcapListenerConfig, v: ScannerVersion): RawHeaders {
  const methods = serviceMethods(service) ?? [];
  const fields: RawHeaders = [
    ['Methods', methods.join(', ')],
    [
      'Service',
      `scangate antivirus (${v.engine}, database ${v.databaseVersion})`.replace(/[^\x20-\x7e]/g, '?'),
    ],
    ['Service-ID', service],
    ['Max-Connections', String(cfg.maxConnections)],
    ['Options-TTL', String(Math.max(1, Math.round(cfg.optionsTtl / 1000)))],
    ['Allow', '204'],
    ['Preview', String(cfg.previewSize)],
    // Every object is scanned, so every one is previewed unless the operator lists exceptions.
    ['Transfer-Preview', '*'],
  ];
  if (cfg.transferIgnore.length) fields.push(['Transfer-Ignore', cfg.transferIgnore.join(', ')]);
  if (cfg.transferComplete.length) fields.push(['Transfer-Complete', cfg.transferComplete.join(', ')]);
  return fields;
}
