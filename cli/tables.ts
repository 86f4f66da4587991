import { AGENT_ID_PATTERN } from '../shared/limits.js';
import type { OptionSpec } from './options.js';

const LOG_LEVEL: OptionSpec = {
  key: 'logLevel',
  type: 'enum',
  values: ['trace', 'debug', 'info', 'warn', 'error', 'silent'],
  default: 'info',
  description: 'log level',
};

/** Everything `outpost agent` can be told, from flags, OUTPOST_* variables or the --config YAML file. */
export const AGENT_OPTIONS: readonly OptionSpec[] = [
  {
    key: 'hub',
    type: 'string',
    required: true,
    placeholder: 'url',
    description: 'hub MQTT URL, e.g. mqtt://hub.example.com:1883; several, comma-separated, for hubs that take over from one another',
  },
  {
    key: 'id',
    type: 'string',
    required: true,
    placeholder: 'agentId',
    description: "this device's agent id (letters, digits, . _ -)",
    pattern: { regex: AGENT_ID_PATTERN, description: '1-128 letters, digits, dots, underscores or dashes' },
  },
  {
    key: 'hubToken',
    type: 'string',
    placeholder: 'token',
    description: "this agent's credential, printed once by `outpost hub agents add` (put it in the environment, not on the command line)",
  },
  { key: 'data', type: 'string', placeholder: 'dir', description: 'data directory (default ./data/<id>)' },
  {
    key: 'http',
    type: 'address',
    default: '127.0.0.1:7801',
    placeholder: 'host:port',
    description: 'device HTTP API address; keep it on loopback unless a token is set',
  },
  { key: 'token', type: 'string', placeholder: 'secret', description: 'require Authorization: Bearer <token> on the device HTTP API' },
  { key: 'collections', type: 'list', placeholder: 'a,b', description: 'collections to replicate locally (default: all)' },
  {
    key: 'syncCron',
    type: 'string',
    placeholder: 'cron',
    description: 'upload only in windows opened by this cron expression (five or six fields); unset = realtime',
  },
  { key: 'syncWindowSeconds', type: 'integer', default: 300, placeholder: 'seconds', description: 'how long each sync window stays open' },
  { key: 'syncDisconnectOutside', type: 'boolean', default: false, description: 'stay disconnected between sync windows (metered links)' },
  {
    key: 'tlsCa',
    type: 'string',
    placeholder: 'file',
    description: "CA certificate (PEM) that signed the hub's certificate, for mqtts:// hubs",
  },
  {
    key: 'tlsCert',
    type: 'string',
    placeholder: 'file',
    description: "this agent's client certificate (PEM; CN = agent id) for mutual TLS",
  },
  { key: 'tlsKey', type: 'string', placeholder: 'file', description: 'the private key (PEM) of the client certificate' },
  {
    key: 'storageLimitMb',
    type: 'integer',
    placeholder: 'mb',
    description: 'cap the agent database at this size; writes beyond it fail with OUTPOST_STORAGE_FULL',
  },
  {
    key: 'budgetMbPerDay',
    type: 'integer',
    placeholder: 'mb',
    description:
      'transfer budget per UTC day on a metered link: alarms always go, other writes and pulls wait once it is spent, blobs from 80 % of it',
  },
  {
    key: 'budgetMbPerMonth',
    type: 'integer',
    placeholder: 'mb',
    description: 'transfer budget per UTC month, spent the same way (both may be set)',
  },
  {
    key: 'blobCacheMb',
    type: 'integer',
    default: 256,
    placeholder: 'mb',
    description:
      'blob content the agent keeps; past it the least recently used is evicted (fetched again when read), never what a pending upload needs',
  },
  {
    key: 'maxBlobMb',
    type: 'integer',
    default: 1024,
    placeholder: 'mb',
    description: 'largest blob content putBlob and PUT /v1/blobs take; a larger one is refused with OUTPOST_BLOB_TOO_LARGE',
  },
  {
    key: 'verifyIntervalSeconds',
    type: 'integer',
    default: 60,
    placeholder: 'seconds',
    description: "how often a quiet agent compares its copy with the hub's digests (change sets and pages compare as they apply)",
  },
  {
    key: 'scrubKbPerMinute',
    type: 'integer',
    default: 4096,
    placeholder: 'kb',
    description: 'stored rows the scrub re-reads a minute to find rot on the card (read-only; 0 turns it off)',
  },
  {
    key: 'reconnectMaxMs',
    type: 'integer',
    default: 30_000,
    placeholder: 'ms',
    description: 'longest wait between reconnect attempts (exponential backoff with jitter)',
  },
  LOG_LEVEL,
  {
    key: 'clockOffsetMs',
    type: 'integer',
    default: 0,
    hidden: true,
    description: "shift this agent's wall clock (testing skewed devices)",
  },
];

/** Everything `outpost hub` can be told, from flags or OUTPOST_* variables. */
export const HUB_OPTIONS: readonly OptionSpec[] = [
  { key: 'port', type: 'integer', default: 1883, description: 'MQTT listener port' },
  { key: 'host', type: 'string', default: '0.0.0.0', description: 'MQTT listener address' },
  {
    key: 'http',
    type: 'address',
    placeholder: 'host:port',
    description:
      'HTTP API address (unset: no HTTP API); with several partitions it is served by the hub of the first one in partitions, once this process leads it, and reaches the others this process leads',
  },
  {
    key: 'data',
    type: 'string',
    default: './data/hub',
    placeholder: 'dir',
    description: 'data directory (the SQLite store lives here unless --store is given)',
  },
  {
    key: 'store',
    type: 'string',
    placeholder: 'url',
    description: 'primary store: postgres://user:password@host:5432/database (unset: SQLite in the data directory)',
  },
  {
    key: 'blobStore',
    type: 'string',
    placeholder: 'url',
    pattern: {
      regex: /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/,
      description: 'an S3 bucket URL, s3://bucket or s3://bucket/prefix',
    },
    description:
      'with a PostgreSQL --store: keep blob content in this S3-compatible bucket (s3://bucket/prefix) instead of the database; keys from the AWS environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role)',
  },
  {
    key: 'blobStoreEndpoint',
    type: 'string',
    placeholder: 'url',
    pattern: { regex: /^https?:\/\/[^/]+\/?$/, description: 'an http:// or https:// URL, e.g. http://minio:9000' },
    description: 'the S3-compatible server holding --blob-store (MinIO, Ceph, Garage, R2…), addressed path-style; unset: AWS S3',
  },
  {
    key: 'blobStoreRegion',
    type: 'string',
    placeholder: 'region',
    description: 'the region of --blob-store (unset: AWS_REGION, else us-east-1)',
  },
  {
    key: 'config',
    type: 'string',
    placeholder: 'file',
    description: 'hub configuration (YAML or JSON): collections, policies, retention, partitions',
  },
  {
    key: 'partitions',
    type: 'list',
    placeholder: 'a,b',
    description:
      'partitions this process serves, e.g. default,orders (default: every partition of the config); on PostgreSQL it leads each one whose lock it gets and stands by for the others. Partitions other than default need --broker',
  },
  {
    key: 'tlsPort',
    type: 'integer',
    placeholder: 'port',
    description: 'also listen for MQTT over TLS on this port (needs tlsCert and tlsKey)',
  },
  { key: 'tlsCert', type: 'string', placeholder: 'file', description: "the hub's TLS certificate (PEM)" },
  { key: 'tlsKey', type: 'string', placeholder: 'file', description: "the hub's TLS private key (PEM)" },
  {
    key: 'tlsCa',
    type: 'string',
    placeholder: 'file',
    description: 'CA (PEM) for client certificates; with tlsRequireClientCert agents authenticate by certificate',
  },
  {
    key: 'tlsRequireClientCert',
    type: 'boolean',
    default: false,
    description: 'mutual TLS: require a client certificate whose CN is the agent id',
  },
  { key: 'tlsOnly', type: 'boolean', default: false, description: 'do not listen for plain MQTT on port' },
  {
    key: 'connectsPerAddress',
    type: 'integer',
    default: 200,
    placeholder: 'n',
    description: 'MQTT connection attempts allowed per address per 10 s',
  },
  {
    key: 'maxConnectBytes',
    type: 'integer',
    default: 8192,
    min: 1024,
    placeholder: 'bytes',
    description:
      'largest MQTT packet before login (an agent CONNECT is a few hundred bytes); a larger one closes the connection at its header',
  },
  {
    key: 'maxQueuedBytes',
    type: 'integer',
    default: 8_388_608,
    min: 65_536,
    placeholder: 'bytes',
    description:
      'most bytes waiting to be sent to one client: over half, it gets no change sets (it pulls them); over it with nothing sent for 5 s, or over 4 times it, it is disconnected',
  },
  {
    key: 'maxInboundBytesPerSecond',
    type: 'integer',
    default: 8_388_608,
    min: 65_536,
    placeholder: 'bytes',
    description:
      'bytes one client may send per second (twice that saved up); past it the hub stops reading its socket until the budget refills, so the client slows down and loses nothing',
  },
  {
    key: 'maxPendingLogins',
    type: 'integer',
    default: 1024,
    min: 1,
    placeholder: 'n',
    description:
      'connections not logged in yet (TLS handshake, CONNECT, token check) held at once; more are closed at once and their clients retry',
  },
  {
    key: 'maxPendingLoginsPerAddress',
    type: 'integer',
    default: 128,
    min: 1,
    placeholder: 'n',
    description: 'the same, per client address (an IPv6 client: per /64); raise it for many devices behind one NAT',
  },
  {
    key: 'maxBlobBytes',
    type: 'integer',
    default: 1_073_741_824,
    min: 1,
    placeholder: 'bytes',
    description:
      'largest blob content the hub takes, from its HTTP API (PUT /v1/blobs/…) or a device over MQTT; a larger one is refused with OUTPOST_BLOB_TOO_LARGE and nothing of it is kept',
  },
  {
    key: 'maxPullBytesPerSecond',
    type: 'integer',
    default: 33_554_432,
    min: 65_536,
    placeholder: 'bytes',
    description:
      'pull pages built per second for one agent, in bytes (as much again saved up); a device catching up uses a fraction, a client pulling as fast as it reads is held to it',
  },
  {
    key: 'authConcurrency',
    type: 'integer',
    default: 2,
    min: 1,
    placeholder: 'n',
    description: 'agent token checks (scrypt, ~50 ms of a core each) running at once; logins beyond a short queue are refused and retried',
  },
  {
    key: 'authBackoffMaxSeconds',
    type: 'integer',
    default: 60,
    min: 1,
    placeholder: 'seconds',
    description:
      'longest an address (an IPv6 client: its /64) waits after failed logins before its next one is checked (the wait doubles per failure from 0.5 s)',
  },
  {
    key: 'adminToken',
    type: 'string',
    placeholder: 'token',
    description: 'bearer token for the HTTP API (admin, metrics, writes); required if it listens beyond loopback',
  },
  {
    key: 'dev',
    type: 'boolean',
    default: false,
    description: 'development mode: admit any agent without credentials (never on a network)',
  },
  {
    key: 'broker',
    type: 'string',
    placeholder: 'url',
    pattern: { regex: /^mqtts?:\/\/[^/]+$/, description: 'an mqtt:// or mqtts:// URL, e.g. mqtt://127.0.0.1:1883' },
    description:
      'use this external MQTT broker (mqtt:// or mqtts://, e.g. Mosquitto) instead of the embedded one; port, host and the tls options then do not apply',
  },
  {
    key: 'brokerUsername',
    type: 'string',
    default: 'outpost-hub',
    placeholder: 'name',
    description: "the hub's account on the external broker, also its client id",
  },
  {
    key: 'brokerPassword',
    type: 'string',
    placeholder: 'secret',
    description: 'the password of that account (put it in the environment, not on the command line)',
  },
  {
    key: 'brokerCa',
    type: 'string',
    placeholder: 'file',
    description: "CA certificate (PEM) that signed the external broker's certificate, for mqtts://",
  },
  LOG_LEVEL,
];
