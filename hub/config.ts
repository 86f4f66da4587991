import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_PARTITION } from '../shared/topics.js';
import { ConfigError } from '../shared/errors.js';
import { ScopeRules, type ScopeRuleConfig } from './scope-rules.js';

export type ConflictPolicy = 'lww' | 'reject' | 'merge';
export type Durability = 'local' | 'hub';

/** How agents buffer a collection's writes while they cannot upload them. */
export interface BufferingPolicy {
  /** `high`: a write flushes at once, even outside a sync window (and takes what is queued before it along). */
  priority: 'high' | 'normal';
  /** Pending writes older than this expire (counted and reported, never silently dropped); 0 = never. */
  ttlSeconds: number;
  /** Most pending writes an agent keeps for this collection; 0 = no limit. */
  maxPending: number;
  /** When `maxPending` is reached: `reject` the new write with a clear error, or `drop-oldest` (telemetry). */
  overflow: 'reject' | 'drop-oldest';
}

export interface CollectionConfig extends BufferingPolicy {
  /** Conflict policy: `lww` (highest HLC wins), `reject` (first committer wins against `base`), `merge` (per-field LWW). */
  conflict: ConflictPolicy;
  /** Default durability of writes to this collection. */
  durability: Durability;
  /** JSON Schema every committed value must satisfy. */
  schema?: object;
  /**
   * Which documents each device holds (hub/scope-rules.ts): a rule, or several (a document is in
   * a device's scope when any holds). Unscoped, a device that may read the collection holds all of it.
   */
  scope?: ScopeRuleConfig | ScopeRuleConfig[];
  /**
   * The collection holds blobs: each document describes content (`{ sha256, size, contentType }`,
   * shared/blobs.ts) and commits only once the hub holds that content whole. `eager`: devices
   * fetch the content as the document replicates (firmware); `lazy`: on first read.
   */
  blobs?: 'eager' | 'lazy';
}

/** The hub's configuration file (YAML or JSON). */
export interface HubConfig {
  collections: Record<string, CollectionConfig>;
  /** What undeclared collections get: `allow` (the defaults below) or `reject` (`unknown_collection`). */
  undeclared: 'allow' | 'reject';
  defaults: Omit<CollectionConfig, 'schema'>;
  retention: {
    /** Keep log entries at least this many hours (0 = no age limit). */
    maxAgeHours: number;
    /** Keep at most this many log entries (0 = no count limit). */
    maxEntries: number;
    /** How often retention runs, in seconds. */
    intervalSeconds: number;
  };
  /** How far ahead of the hub's clock a write's timestamp may be, in seconds. */
  maxClockSkewSeconds: number;
  /**
   * Who may read and write which collection (outside --dev). Deny by default: a collection not
   * listed follows `default`, which grants nothing unless the file says so. Subjects: `*` (every
   * agent), `group:NAME`, or an agent id.
   */
  access: {
    groups: Record<string, string[]>;
    collections: Record<string, { read?: string[]; write?: string[] }>;
    default: { read: string[]; write: string[] };
  };
  /**
   * Collections assigned to partitions other than `default` (partition → collections). Each
   * partition is a log of its own with its own leading hub process; every collection not listed
   * belongs to `default`, whose topics are those of a hub without partitions.
   */
  partitions: Record<string, string[]>;
  /**
   * Transfer budgets of devices on metered links, by subject (`*`, `group:NAME` or an agent id; the
   * most specific applies): MiB per UTC day and/or month. A device's own --budget-mb-per-day or
   * --budget-mb-per-month takes precedence over what the hub declares.
   */
  budgets: Record<string, { mbPerDay?: number; mbPerMonth?: number }>;
}

const POLICY = { enum: ['lww', 'reject', 'merge'] };
const DURABILITY = { enum: ['local', 'hub'] };
const BUFFERING = {
  priority: { enum: ['high', 'normal'] },
  ttlSeconds: { type: 'number', minimum: 0 },
  maxPending: { type: 'integer', minimum: 0 },
  overflow: { enum: ['reject', 'drop-oldest'] },
};

/** A scope rule's shape; which fields go together is checked by ScopeRules, which says so plainly. */
const SCOPE_RULE = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: { key: { type: 'string' }, field: { type: 'string', minLength: 1 }, equals: { type: 'string' }, in: { type: 'string' } },
};

const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    collections: {
      type: 'object',
      propertyNames: { pattern: '^[a-z0-9_-]{1,64}$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          conflict: POLICY,
          durability: DURABILITY,
          schema: { type: 'object' },
          scope: { anyOf: [SCOPE_RULE, { type: 'array', items: SCOPE_RULE }] },
          blobs: { enum: ['eager', 'lazy'] },
          ...BUFFERING,
        },
      },
    },
    undeclared: { enum: ['allow', 'reject'] },
    defaults: { type: 'object', additionalProperties: false, properties: { conflict: POLICY, durability: DURABILITY, ...BUFFERING } },
    retention: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxAgeHours: { type: 'number', minimum: 0 },
        maxEntries: { type: 'integer', minimum: 0 },
        intervalSeconds: { type: 'number', minimum: 0.1 },
      },
    },
    maxClockSkewSeconds: { type: 'number', minimum: 1 },
    budgets: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        properties: { mbPerDay: { type: 'number', exclusiveMinimum: 0 }, mbPerMonth: { type: 'number', exclusiveMinimum: 0 } },
      },
    },
    partitions: {
      type: 'object',
      propertyNames: { pattern: '^[a-z0-9_-]{1,64}$' },
      additionalProperties: { type: 'array', items: { type: 'string', pattern: '^[a-z0-9_-]{1,64}$' } },
    },
    access: {
      type: 'object',
      additionalProperties: false,
      properties: {
        groups: { type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } },
        collections: {
          type: 'object',
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            properties: { read: { type: 'array', items: { type: 'string' } }, write: { type: 'array', items: { type: 'string' } } },
          },
        },
        default: {
          type: 'object',
          additionalProperties: false,
          properties: { read: { type: 'array', items: { type: 'string' } }, write: { type: 'array', items: { type: 'string' } } },
        },
      },
    },
  },
} as const;

export const DEFAULT_HUB_CONFIG: HubConfig = {
  collections: {},
  undeclared: 'allow',
  defaults: { conflict: 'lww', durability: 'local', priority: 'normal', ttlSeconds: 0, maxPending: 0, overflow: 'reject' },
  retention: { maxAgeHours: 0, maxEntries: 0, intervalSeconds: 60 },
  maxClockSkewSeconds: 60,
  access: { groups: {}, collections: {}, default: { read: [], write: [] } },
  partitions: {},
  budgets: {},
};

/** Reads, validates and completes a hub configuration file; throws ConfigError naming the option. */
export function loadHubConfig(path: string): HubConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8')) ?? {};
  } catch (cause) {
    throw new ConfigError(`cannot read hub config ${path}: ${(cause as Error).message}`, { cause });
  }
  return parseHubConfig(raw, path);
}

export function parseHubConfig(raw: unknown, source = 'hub config'): HubConfig {
  const ajv = new Ajv({ allErrors: false });
  const validate = ajv.compile(CONFIG_SCHEMA);
  if (!validate(raw)) throw new ConfigError(`${source}: ${describeErrors(validate.errors)}`);
  const given = raw as Partial<HubConfig> & { collections?: Record<string, Partial<CollectionConfig>> };
  const defaults = { ...DEFAULT_HUB_CONFIG.defaults, ...given.defaults };
  const collections: Record<string, CollectionConfig> = {};
  for (const [name, c] of Object.entries(given.collections ?? {})) {
    collections[name] = { ...defaults, ...c };
  }
  try {
    scopeRules(collections);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(`${source}: ${error.message}`);
    throw error;
  }
  return {
    collections,
    undeclared: given.undeclared ?? DEFAULT_HUB_CONFIG.undeclared,
    defaults,
    retention: { ...DEFAULT_HUB_CONFIG.retention, ...given.retention },
    maxClockSkewSeconds: given.maxClockSkewSeconds ?? DEFAULT_HUB_CONFIG.maxClockSkewSeconds,
    access: {
      groups: given.access?.groups ?? {},
      collections: given.access?.collections ?? {},
      default: { read: given.access?.default?.read ?? [], write: given.access?.default?.write ?? [] },
    },
    partitions: checkPartitions(given.partitions ?? {}, source),
    budgets: given.budgets ?? {},
  };
}

/** Partition names are valid (the schema checked), `default` is implicit, and no collection is in two partitions. */
function checkPartitions(partitions: Record<string, string[]>, source: string): Record<string, string[]> {
  if (DEFAULT_PARTITION in partitions) {
    throw new ConfigError(
      `${source}: /partitions/${DEFAULT_PARTITION} may not be listed: every collection not assigned to another partition is in it`,
    );
  }
  const owner = new Map<string, string>();
  for (const [partition, collections] of Object.entries(partitions)) {
    for (const collection of collections) {
      const other = owner.get(collection);
      if (other !== undefined) {
        throw new ConfigError(
          other === partition
            ? `${source}: /partitions/${partition} lists collection ${collection} twice`
            : `${source}: collection ${collection} is assigned to both partition ${other} and partition ${partition}; a collection belongs to one partition`,
        );
      }
      owner.set(collection, partition);
    }
  }
  return Object.fromEntries(Object.entries(partitions).map(([p, c]) => [p, [...c]]));
}

/** The scope rules of the collections that have one, compiled (ConfigError naming the option if one is wrong). */
export function scopeRules(collections: Readonly<Record<string, Pick<CollectionConfig, 'scope'>>>): ScopeRules {
  return new ScopeRules(
    Object.fromEntries(Object.entries(collections).flatMap(([name, c]) => (c.scope === undefined ? [] : [[name, c.scope]]))),
  );
}

/** The partition a collection belongs to: the one that lists it, or `default`. */
export function partitionOf(config: HubConfig, collection: string): string {
  for (const [partition, collections] of Object.entries(config.partitions)) {
    if (collections.includes(collection)) return partition;
  }
  return DEFAULT_PARTITION;
}

/** The collections of one partition, with their configs: what its hub's scope rules cover. */
export function collectionsOfPartition(config: HubConfig, partition: string): Record<string, CollectionConfig> {
  return Object.fromEntries(Object.entries(config.collections).filter(([name]) => partitionOf(config, name) === partition));
}

/** Collections assigned to partitions other than the default (collection → partition): what agents route by. */
export function assignment(config: HubConfig): Record<string, string> {
  return Object.fromEntries(Object.entries(config.partitions).flatMap(([p, collections]) => collections.map((c) => [c, p])));
}

/** Every partition of the config: `default` first, then the named ones. */
export function partitionsOf(config: HubConfig): string[] {
  return [DEFAULT_PARTITION, ...Object.keys(config.partitions)];
}

/** The part of a collection's policy agents follow. */
export type AgentPolicy = Omit<CollectionConfig, 'schema'>;

export interface CollectionPolicy extends Omit<CollectionConfig, 'schema'> {
  name: string;
  declared: boolean;
  /** Validates a document value; returns an error text or undefined. */
  check(value: unknown): string | undefined;
}

/** The policy of every collection, with each declared JSON Schema compiled once. */
export class CollectionPolicies {
  readonly #policies = new Map<string, CollectionPolicy>();

  constructor(readonly config: HubConfig) {
    const ajv = new Ajv({ allErrors: false, strict: false });
    for (const [name, c] of Object.entries(config.collections)) {
      let validate: ValidateFunction | undefined;
      if (c.schema) {
        try {
          validate = ajv.compile(c.schema);
        } catch (cause) {
          throw new ConfigError(`collections.${name}.schema is not a valid JSON Schema: ${(cause as Error).message}`, { cause });
        }
      }
      const { schema, ...policy } = c;
      this.#policies.set(name, {
        name,
        declared: true,
        ...policy,
        check: (value) => (validate && !validate(value) ? describeErrors(validate.errors) : undefined),
      });
    }
  }

  /** The policy for a collection, or undefined when undeclared collections are refused. */
  get(name: string): CollectionPolicy | undefined {
    const declared = this.#policies.get(name);
    if (declared) return declared;
    if (this.config.undeclared === 'reject') return undefined;
    return { name, declared: false, ...this.config.defaults, check: () => undefined };
  }

  /** Whether a collection holds blobs (declared `blobs`; the defaults never do). Asked per op: no policy is built for it. */
  holdsBlobs(name: string): boolean {
    return this.#policies.get(name)?.blobs !== undefined;
  }

  /** What agents need to know, for the retained hub status. */
  describe(): { collections: Record<string, AgentPolicy>; undeclared: 'allow' | 'reject'; defaults: AgentPolicy } {
    const forAgents = (p: Omit<CollectionConfig, 'schema'>): AgentPolicy => ({
      conflict: p.conflict,
      durability: p.durability,
      priority: p.priority,
      ttlSeconds: p.ttlSeconds,
      maxPending: p.maxPending,
      overflow: p.overflow,
      ...(p.blobs !== undefined && { blobs: p.blobs }),
    });
    return {
      collections: Object.fromEntries([...this.#policies].map(([name, p]) => [name, forAgents(p)])),
      undeclared: this.config.undeclared,
      defaults: forAgents(this.config.defaults),
    };
  }
}

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid';
  const where = e.instancePath || '/';
  const extra =
    e.keyword === 'enum'
      ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')})`
      : e.keyword === 'additionalProperties'
        ? ` (${(e.params as { additionalProperty: string }).additionalProperty})`
        : '';
  return `${where} ${e.message ?? 'is invalid'}${extra}`;
}
