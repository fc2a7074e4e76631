/**
 * The configuration contract (DESIGN 4.2). Every default lives here and nowhere else; every object is
 * strict, so an unknown or misspelt key is an error naming its path rather than a silent no-op.
 */
import { z } from 'zod';
import { parseAddress, parseDuration, parseSize } from '../util/units.js';

const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const address = z.string().refine(
  (v) => {
    try {
      parseAddress(v);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected host:port, [v6]:port or a unix socket path' },
);

export const engineLimitsSchema = z.strictObject({
  maxFileSize: size.default(100 * 1024 ** 2),
  maxScanSize: size.default(400 * 1024 ** 2),
  maxRecursion: z.number().int().min(0).max(1000).default(17),
  maxFiles: z.number().int().min(1).default(10_000),
  timeout: duration.default(120_000),
  /** Like clamd's AlertExceedsMax, but on by default: a limit hit is a verdict, never a silent pass. */
  alertExceedsMax: z.boolean().default(true),
  /** Cap on bytes a single decompressor may produce relative to its input (zip-bomb guard). */
  maxCompressionRatio: z.number().min(1).default(1000),
});

export const engineSchema = z.strictObject({
  signatures: z.array(z.string()).default([]),
  backend: z.enum(['builtin', 'clamd']).default('builtin'),
  clamd: z
    .strictObject({
      address: address.default('/run/clamav/clamd.ctl'),
      timeout: duration.default(120_000),
      connectTimeout: duration.default(5_000),
    })
    .prefault({}),
  limits: engineLimitsSchema.prefault({}),
  onError: z.enum(['block', 'allow']).default('block'),
  cache: z
    .strictObject({
      entries: z.number().int().min(0).default(65_536),
      /** redis://[:password@]host:port[/db] or a unix socket path; verdicts shared by every daemon using it. */
      redis: z.string().nullable().default(null),
      /** How long a verdict stays in Redis (keys also carry the database version, so a new one never reads old). */
      redisTtl: duration.default(7 * 86_400_000),
      redisPrefix: z.string().default('scangate:verdict:'),
      /** A Redis call slower than this counts as a miss (the scan goes on); Redis never fails a scan. */
      redisTimeout: duration.default(500),
    })
    .prefault({}),
});

export const tlsSchema = z.strictObject({
  ca: z
    .strictObject({ cert: z.string().nullable().default(null), key: z.string().nullable().default(null) })
    .prefault({}),
  upstream: z
    .strictObject({
      verify: z.boolean().default(true),
      ca: z.array(z.string()).default([]),
    })
    .prefault({}),
  passthrough: z.array(z.string()).default([]),
  /** How long a host whose client rejected our certificate stays on the automatic passthrough list. */
  autoPassthroughTtl: duration.default(3_600_000),
  /** Validity of minted leaf certificates. */
  leafValidity: duration.default(30 * 86_400_000),
  contextCacheSize: z.number().int().min(1).default(1000),
});

const rateLimit = z.strictObject({
  perMinute: z.number().min(0),
  burst: z.number().int().min(1),
});

const listenerBase = {
  name: z.string().min(1),
  listen: address,
  /** Client addresses allowed to connect (CIDRs). Default loopback only: never an open proxy. */
  allow: z.array(z.string()).optional(),
  maxConnections: z.number().int().min(1).default(10_000),
  idleTimeout: duration.default(300_000),
  headerTimeout: duration.default(30_000),
};

const httpListener = z.strictObject({
  ...listenerBase,
  protocol: z.literal('http'),
  mode: z.enum(['explicit', 'transparent', 'reverse']).default('explicit'),
  upstream: z.string().nullable().default(null),
  tls: z.strictObject({ cert: z.string().optional(), key: z.string().optional() }).default({}),
  unknownProtocol: z.enum(['splice', 'block']).default('splice'),
  /** Objects up to this size are held whole until the verdict; larger ones stream with a held-back tail. */
  holdLimit: size.default(32 * 1024 ** 2),
  /** Bytes held back at the end of a streamed object until its verdict (HAVP's keep-back buffer). */
  keepBack: size.default(1024 ** 2),
  /**
   * Bytes of a held object kept in memory; the rest goes to a 0600 temp file in dataDir/spool. Per
   * connection: with maxConnections holding at once it bounds the memory held bodies take.
   */
  spoolMemory: size.default(1024 ** 2),
  maxHeaderSize: size.default(64 * 1024),
  /** A client idle this long between requests has its upstream connection closed (reopened on its next request). */
  upstreamIdleTimeout: duration.default(5_000),
});

const smtpListener = z.strictObject({
  ...listenerBase,
  protocol: z.literal('smtp'),
  upstream: z.string(),
  tls: z
    .strictObject({
      client: z.enum(['starttls', 'implicit', 'none']).default('starttls'),
      upstream: z.enum(['starttls', 'implicit', 'none']).default('starttls'),
      cert: z.string().optional(),
      key: z.string().optional(),
      name: z.string().optional(),
    })
    .prefault({}),
  onInfected: z.enum(['reject', 'strip', 'tag']).default('reject'),
  unreachable: z.enum(['reset', '421']).default('reset'),
  maxMessageSize: size.default(50 * 1024 ** 2),
  /** Longest command line accepted (RFC 5321 §4.5.3.1.4 says 512; extensions need more; Postfix uses 2048). */
  maxCommandLength: z.number().int().min(512).max(65_536).default(2048),
  /** Bytes of a message kept in memory while it is scanned; larger ones go to dataDir/spool. */
  spoolMemory: size.default(4 * 1024 ** 2),
  /** Upstream TCP connect + TLS handshake deadline. */
  connectTimeout: duration.default(30_000),
});

const ftpListener = z.strictObject({
  ...listenerBase,
  protocol: z.literal('ftp'),
  upstream: z.string(),
  tls: z
    .strictObject({
      client: z.enum(['explicit', 'implicit', 'none']).default('explicit'),
      upstream: z.enum(['explicit', 'implicit', 'none']).default('explicit'),
      cert: z.string().optional(),
      key: z.string().optional(),
      name: z.string().optional(),
    })
    .prefault({}),
  /** Ports of the gateway's own data listeners (client PASV/EPSV; server-side active mode). */
  passivePorts: z
    .string()
    .regex(/^\d{1,5}-\d{1,5}$/, 'expected a port range like 50000-50100')
    .default('50000-50100'),
  /** How the gateway opens data connections to the server, whatever mode the client chose. */
  upstreamData: z.enum(['passive', 'active']).default('passive'),
  unreachable: z.enum(['reset', '421']).default('reset'),
  /** Largest file spooled for scanning; a larger transfer is refused (552), never passed unscanned. */
  maxFileSize: size.default(1024 ** 3),
  /**
   * After an upload passed maxFileSize, this many more of its bytes are read and dropped so that the
   * client finishes its send and reads the 552 (curl gives up on a reset data connection without
   * reading the reply); past it, or with 0, the data connection is reset.
   */
  tooBigDrain: size.default(64 * 1024 ** 2),
  /**
   * Files up to this size are held whole until the verdict; larger ones stream with keepBack held
   * back, and an infected one is cut. Set to maxFileSize for strict store-and-forward.
   */
  holdLimit: size.default(32 * 1024 ** 2),
  /** Bytes held back at the end of a streamed file until its verdict (HAVP's keep-back buffer). */
  keepBack: size.default(1024 ** 2),
  /** Bytes of a file kept in memory while it is scanned; larger ones go to dataDir/spool. */
  spoolMemory: size.default(16 * 1024 ** 2),
  /** Upstream TCP connect + TLS handshake deadline (control and data connections). */
  connectTimeout: duration.default(30_000),
  /** How long a data connection may take to arrive, and to move a byte once open. */
  dataTimeout: duration.default(120_000),
  /** RFC 959 sets no limit; vsftpd reads 4 KiB. */
  maxCommandLength: z.number().int().min(512).max(65_536).default(4096),
  /** While a scan or a slow client leaves the server leg idle, a NOOP goes to the server this often. */
  keepalive: duration.default(60_000),
});

/** mTLS long-connection gateway (README "mTLS tunnel"). `allow` here is the certificate allow-list; client networks go in `clients`. */
const tunnelListener = z.strictObject({
  ...listenerBase,
  protocol: z.literal('tunnel'),
  /** The application backend, host:port. */
  upstream: address,
  mode: z.enum(['stream', 'message']).default('stream'),
  /** Stream mode: no byte either way for this long closes the pair (stunnel's TIMEOUTidle, 12 h). */
  idleTimeout: duration.default(43_200_000),
  tls: z.strictObject({
    cert: z.string(),
    key: z.string(),
    /** Client certificates must chain to this bundle. */
    clientCa: z.string(),
    /** PEM CRL(s) for every CA level in clientCa (OpenSSL checks the whole chain). */
    crl: z.string().nullable().default(null),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    /** Reload when a file changes; SIGHUP always reloads. */
    watch: z.boolean().default(true),
  }),
  /** OR'd; all empty allows any certificate from clientCa. URI entries take `*` (one segment) and `**`. */
  allow: z
    .strictObject({
      cn: z.array(z.string()).default([]),
      dns: z.array(z.string()).default([]),
      uri: z
        .array(
          z
            .string()
            .refine((u) => !u.slice(0, Math.max(0, u.indexOf('/', u.indexOf('://') + 3))).includes('*'), {
              message: 'wildcards are only allowed in the path of a URI pattern',
            }),
        )
        .default([]),
    })
    .prefault({}),
  /** Client networks (CIDRs) allowed to connect; default loopback only. */
  clients: z.array(z.string()).optional(),
  /** Stream mode: send a PROXY protocol v2 header with the client identity to the backend. */
  proxyProtocol: z.boolean().default(false),
  /** Message mode, both legs: PING after `interval` of silence, close after `timeout`. */
  heartbeat: z
    .strictObject({ interval: duration.default(15_000), timeout: duration.default(45_000) })
    .prefault({}),
  /** Message mode: the pool of long-lived backend connections. */
  backend: z
    .strictObject({
      connections: z.number().int().min(1).max(256).default(4),
      connectTimeout: duration.default(10_000),
      backoffMin: duration.default(100),
      backoffMax: duration.default(10_000),
      requestTimeout: duration.default(30_000),
      /** How long a request waits for a backend connection while none is up. */
      queueTimeout: duration.default(5_000),
      queueLimit: z.number().int().min(0).default(10_000),
    })
    .prefault({}),
  maxFrameSize: size.default(1024 ** 2),
  /** Message mode: requests in flight per client connection before the gateway stops reading from it. */
  maxInFlight: z.number().int().min(1).default(1024),
  /** Message mode: scan each request payload with the engine before forwarding. */
  scan: z.boolean().default(false),
});

const clamdListener = z.strictObject({
  ...listenerBase,
  protocol: z.literal('clamd'),
  streamMaxLength: size.default(100 * 1024 ** 2),
  readTimeout: duration.default(120_000),
  /** Scans running at once (clamd's MaxThreads); others wait in arrival order. */
  maxScans: z.number().int().min(1).max(1024).default(10),
  /** Directory depth for SCAN/CONTSCAN/MULTISCAN (clamd's MaxDirectoryRecursion). */
  maxDirectoryRecursion: z.number().int().min(1).max(1000).default(15),
  /** Mode of the unix socket (clamd's LocalSocketMode); null keeps the process umask. */
  socketMode: z
    .string()
    .regex(/^[0-7]{3,4}$/, 'expected an octal mode like 660')
    .nullable()
    .default(null),
});

const icapListener = z.strictObject({
  ...listenerBase,
  protocol: z.literal('icap'),
  /** Preview bytes asked for in OPTIONS (RFC 3507 §4.5); 0 still lets a client end a preview with ieof. */
  previewSize: size.default(1024),
  /** Largest ICAP head, and separately largest encapsulated HTTP header section (Encapsulated offsets). */
  maxHeaderSize: size.default(64 * 1024),
  /**
   * Bodies up to this size are held whole until the verdict (a clean one gets 204, an infected one the
   * block page) when the client keeps a copy (Allow: 204); larger ones stream with keepBack held back.
   */
  holdLimit: size.default(32 * 1024 ** 2),
  /** Bytes held back at the end of a streamed body until its verdict (HAVP's keep-back buffer). */
  keepBack: size.default(1024 ** 2),
  /**
   * The same two limits for a client that keeps no copy (no Allow: 204), such as Squid for bodies
   * over 64 KB: it stops sending after its 64 KB buffer until the answer flows (Squid bug 5352), so
   * the answer must start early. An infected body found after release is cut (partiallyblocked).
   */
  noBackup: z
    .strictObject({ holdLimit: size.default(32 * 1024), keepBack: size.default(16 * 1024) })
    .prefault({}),
  /** Bytes of a held body kept in memory before it moves to a temp file in dataDir/spool. */
  spoolMemory: size.default(1024 ** 2),
  /** Scanner error: block answers ICAP 500 (the client's bypass policy decides), allow passes it. Default engine.onError. */
  onError: z.enum(['block', 'allow']).optional(),
  /** Options-TTL advertised in OPTIONS: how long a client may cache them (ISTag still travels on every reply). */
  optionsTtl: duration.default(3_600_000),
  /** File extensions a client need not send (Transfer-Ignore) / must send whole (Transfer-Complete). */
  transferIgnore: z.array(z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/)).default([]),
  transferComplete: z.array(z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/)).default([]),
});

export const listenerSchema = z.discriminatedUnion('protocol', [
  httpListener,
  smtpListener,
  ftpListener,
  tunnelListener,
  clamdListener,
  icapListener,
]);

export const configSchema = z.strictObject({
  dataDir: z.string().default('./data'),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  /** Processes serving the listeners: 1 (no cluster), a number, or auto (one per core, node:cluster). */
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default(1),
  engine: engineSchema.prefault({}),
  tls: tlsSchema.prefault({}),
  listeners: z
    .array(listenerSchema)
    .prefault([{ name: 'web', protocol: 'http', listen: '127.0.0.1:8080' }])
    .superRefine((ls, ctx) => {
      const seen = new Set<string>();
      ls.forEach((l, i) => {
        if (seen.has(l.name))
          ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate listener name "${l.name}"` });
        seen.add(l.name);
      });
    }),
  /** The anti-phishing mail registry (README "Anti-phishing registry"); null: not started. */
  registry: z
    .strictObject({
      listen: address.default('127.0.0.1:8025'),
      /** sqlite:PATH (relative to dataDir) or postgres://… */
      database: z.string().default('sqlite:registry.db'),
      /** Base URL of the web page as users reach it, for links in mail; default http://<listen>. */
      publicUrl: z.string().url().nullable().default(null),
      /** The relay confirmation and reminder mail goes through; null: addresses cannot be enrolled. */
      mail: z
        .strictObject({
          smtp: z.string(),
          from: z.string(),
          tls: z.enum(['opportunistic', 'require', 'implicit', 'none']).default('opportunistic'),
          user: z.string().nullable().default(null),
          password: z.string().nullable().default(null),
        })
        .nullable()
        .default(null),
      /** How long a mailed confirmation code stays valid, and how many wrong tries spend it. */
      confirmTtl: duration.default(86_400_000),
      confirmAttempts: z.number().int().min(1).max(100).default(5),
      /** How often each enrolled address is mailed what is registered under it. */
      reminderInterval: duration.default(30 * 86_400_000),
      /** Largest request body (JSON or form, a pasted mail included); larger ones get 413. */
      maxRequestSize: size.default(2 * 1024 ** 2),
      /** Requests per client address per minute, with bursts; perMinute 0 disables a limit. */
      rateLimits: z
        .strictObject({
          register: rateLimit.prefault({ perMinute: 60, burst: 20 }),
          confirm: rateLimit.prefault({ perMinute: 20, burst: 10 }),
          query: rateLimit.prefault({ perMinute: 6000, burst: 1000 }),
        })
        .prefault({}),
      /** The SMTP gateway's use of the registry (listener names refer to `listeners`). */
      gateway: z
        .strictObject({
          /** Listeners whose mail is checked: X-Scangate-Phishing: pass | fail | suspicious. */
          inbound: z.array(z.string()).default([]),
          /** What a `fail` (tampered or not registered) does: header only, tag the subject, or reject. */
          onFail: z.enum(['header', 'tag', 'reject']).default('tag'),
          subjectTag: z.string().min(1).max(64).default('[PHISHING?]'),
          /** Listeners whose mail from the organisation's enrolled addresses is registered and stamped. */
          outbound: z.array(z.string()).default([]),
          /** The organisation account (token file) and its private key (PEM file) for outbound. */
          organisation: z
            .strictObject({ tokenFile: z.string(), keyFile: z.string() })
            .nullable()
            .default(null),
        })
        .prefault({}),
    })
    .nullable()
    .default(null),
  /** The admin listener (metrics, health, dashboard, event API); null disables it. */
  admin: z
    .strictObject({
      listen: address.default('127.0.0.1:9090'),
      /** Bearer token for everything but /healthz; null: generated once into dataDir/admin.token (0600). */
      token: z.string().min(16).nullable().default(null),
      /** Client networks the admin answers (CIDRs); others get 403. Default loopback only. */
      allow: z.array(z.string()).default(['127.0.0.0/8', '::1/128']),
    })
    .nullable()
    .prefault({}),
  /** Event store: every non-clean verdict and security event, queryable from the admin API; null disables it. */
  events: z
    .strictObject({
      /** sqlite:PATH (relative to dataDir) or postgres://… */
      database: z.string().default('sqlite:events.db'),
      /** Events older than this are deleted (checked hourly). */
      retention: duration.default(90 * 86_400_000),
    })
    .nullable()
    .prefault({}),
  /** How long sessions may finish: after SIGTERM (then the process exits 0), and on the old state after SIGHUP. */
  drain: z
    .strictObject({ timeout: duration.default(30_000), reloadTimeout: duration.default(600_000) })
    .prefault({}),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type ListenerConfig = Config['listeners'][number];
export type HttpListenerConfig = Extract<ListenerConfig, { protocol: 'http' }>;
export type SmtpListenerConfig = Extract<ListenerConfig, { protocol: 'smtp' }>;
export type FtpListenerConfig = Extract<ListenerConfig, { protocol: 'ftp' }>;
export type TunnelListenerConfig = Extract<ListenerConfig, { protocol: 'tunnel' }>;
export type ClamdListenerConfig = Extract<ListenerConfig, { protocol: 'clamd' }>;
export type IcapListenerConfig = Extract<ListenerConfig, { protocol: 'icap' }>;
export type EngineConfig = Config['engine'];
export type EngineLimits = EngineConfig['limits'];
export type TlsConfig = Config['tls'];
