import { ConfigError } from '../shared/errors.js';

/**
 * One rule of a collection's scope, as the config writes it:
 * - `{ key: "{agent}/" }`: the documents whose key starts with the device's id and `/`;
 * - `{ field: site, equals: "{label.site}" }`: those whose field `site` equals the device's label;
 * - `{ field: site, in: "{label.sites}" }`: the same, for each value of a comma-separated label.
 * A template holds at most one placeholder: `{agent}`, `{label.NAME}` or `{group}` (each access
 * group the device belongs to), with literal text around it; one without any names the same
 * documents for every device.
 */
export type ScopeRuleConfig = { key: string } | { field: string; equals: string } | { field: string; in: string };

/** Who a device is, for its scope: its id, its labels (`outpost hub agents label`) and its access groups. */
export interface ScopeSubject {
  agentId: string;
  labels: Readonly<Record<string, string>>;
  groups: readonly string[];
}

type Placeholder = { kind: 'agent' } | { kind: 'label'; name: string } | { kind: 'group' };

/** A template split at its placeholder. */
interface Template {
  prefix: string;
  placeholder: Placeholder | undefined;
  suffix: string;
}

interface KeyRule {
  kind: 'key';
  template: Template;
  /** What the rule's buckets are named by: the template as written. */
  id: string;
}

interface FieldRule {
  kind: 'field';
  path: readonly string[];
  template: Template;
  /** `in`: the placeholder's value is a comma-separated list. */
  list: boolean;
  id: string;
}

type Rule = KeyRule | FieldRule;

const PLACEHOLDER = /\{([^{}]*)\}/g;
/** What a label's name may be (hub/labels.ts checks names against it when labels are set). */
export const LABEL_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

/**
 * The scope rules of every scoped collection, compiled. A rule maps a document to a few buckets
 * computed from the document alone (its key, or a field of its value), and a device to the
 * buckets its id, labels and groups give; a document is in a device's scope when they share
 * one. No per-device work is done for a document: that is what makes delivery cost in
 * proportion to the buckets a change touches, not to the fleet.
 *
 * A bucket is named `collection|k|template|value` (key rules) or `collection|f|field|value`
 * (field rules): two rules on the same field share their buckets whatever their placeholders.
 */
export class ScopeRules {
  readonly #rules = new Map<string, readonly Rule[]>();

  constructor(scopes: Readonly<Record<string, ScopeRuleConfig | readonly ScopeRuleConfig[]>>) {
    for (const [collection, scope] of Object.entries(scopes)) {
      const list = Array.isArray(scope) ? (scope as readonly ScopeRuleConfig[]) : [scope as ScopeRuleConfig];
      if (list.length === 0) throw new ConfigError(`collections.${collection}.scope: give at least one rule`);
      this.#rules.set(
        collection,
        list.map((rule, i) => compile(rule, `collections.${collection}.scope${Array.isArray(scope) ? `[${i}]` : ''}`)),
      );
    }
  }

  /** The collections that have a scope. */
  get collections(): string[] {
    return [...this.#rules.keys()];
  }

  scoped(collection: string): boolean {
    return this.#rules.has(collection);
  }

  /** The buckets a document is in (none: no device holds it through its scope). `value` undefined: only the key counts. */
  bucketsOfDocument(collection: string, key: string, value: unknown): string[] {
    const rules = this.#rules.get(collection);
    if (!rules) return [];
    const buckets = new Set<string>();
    for (const rule of rules) {
      if (rule.kind === 'key') {
        const v = matchKey(rule.template, key);
        if (v !== undefined) buckets.add(bucketId(collection, 'k', rule.id, v));
      } else {
        for (const v of fieldValues(value, rule.path)) buckets.add(bucketId(collection, 'f', rule.id, v));
      }
    }
    return [...buckets];
  }

  /** The buckets a device holds of a scoped collection (none for an unscoped one). */
  bucketsOfDevice(collection: string, subject: ScopeSubject): string[] {
    const rules = this.#rules.get(collection);
    if (!rules) return [];
    const buckets = new Set<string>();
    for (const rule of rules) {
      if (rule.kind === 'key') {
        // A key rule's bucket is named by the placeholder's value, as matchKey finds it in a key:
        // up to the first occurrence of the text after it, so a value containing that text can
        // match no key, and holds nothing (rather than another value's documents).
        const { suffix } = rule.template;
        for (const v of placeholderValues(rule.template, subject, false)) {
          if (suffix === '' || !v.includes(suffix)) buckets.add(bucketId(collection, 'k', rule.id, v));
        }
      } else {
        // A field rule's by the value the field must have: the template filled in.
        const { prefix, suffix } = rule.template;
        for (const v of placeholderValues(rule.template, subject, rule.list))
          buckets.add(bucketId(collection, 'f', rule.id, `${prefix}${v}${suffix}`));
      }
    }
    return [...buckets];
  }

  /** Whether a document is in the scope of a device that holds `deviceBuckets`. */
  holds(collection: string, key: string, value: unknown, deviceBuckets: ReadonlySet<string>): boolean {
    return this.bucketsOfDocument(collection, key, value).some((b) => deviceBuckets.has(b));
  }
}

function bucketId(collection: string, kind: 'k' | 'f', rule: string, value: string): string {
  return `${collection}|${kind}|${rule}|${value}`;
}

function compile(rule: ScopeRuleConfig, where: string): Rule {
  const given = Object.keys(rule).sort().join(',');
  if (given !== 'key' && given !== 'equals,field' && given !== 'field,in') {
    throw new ConfigError(
      `${where}: a rule is { key: "{agent}/" }, { field: NAME, equals: TEMPLATE } or { field: NAME, in: TEMPLATE }; got ${JSON.stringify(rule)}`,
    );
  }
  if ('key' in rule) {
    if (rule.key === '') throw new ConfigError(`${where}.key: give a template such as "{agent}/"`);
    const template = parseTemplate(rule.key, `${where}.key`);
    // An agent id may contain letters, digits, "_", "." and "-": text after {agent} that starts
    // with one of them would split keys ambiguously ("{agent}-" reads pi-1-settings as pi's).
    if (template.placeholder?.kind === 'agent' && /^[A-Za-z0-9_.-]/.test(template.suffix)) {
      throw new ConfigError(
        `${where}.key: the text after {agent} must start with a character agent ids cannot contain, such as "/" or ":" (got ${JSON.stringify(rule.key)})`,
      );
    }
    return { kind: 'key', template, id: rule.key };
  }
  const list = 'in' in rule;
  const text = list ? rule.in : rule.equals;
  const template = parseTemplate(text, `${where}.${list ? 'in' : 'equals'}`);
  const path = rule.field.split('.');
  if (rule.field.includes('|') || path.some((p) => p === '')) {
    throw new ConfigError(`${where}.field: ${JSON.stringify(rule.field)} is not a field name (use a.b for a nested field, no "|")`);
  }
  return { kind: 'field', path, template, list, id: rule.field };
}

function parseTemplate(text: string, where: string): Template {
  if (text.includes('|')) throw new ConfigError(`${where}: ${JSON.stringify(text)} may not contain "|"`);
  const found = [...text.matchAll(PLACEHOLDER)];
  if (found.length > 1)
    throw new ConfigError(`${where}: ${JSON.stringify(text)} has more than one placeholder; use one of {agent}, {label.NAME}, {group}`);
  if (found.length === 0) {
    if (/[{}]/.test(text)) throw new ConfigError(`${where}: ${JSON.stringify(text)} has an unclosed brace`);
    return { prefix: text, placeholder: undefined, suffix: '' };
  }
  const match = found[0]!;
  const name = match[1]!;
  let placeholder: Placeholder;
  if (name === 'agent') placeholder = { kind: 'agent' };
  else if (name === 'group') placeholder = { kind: 'group' };
  else if (name.startsWith('label.') && LABEL_NAME.test(name.slice(6))) placeholder = { kind: 'label', name: name.slice(6) };
  else throw new ConfigError(`${where}: unknown placeholder {${name}}; use {agent}, {label.NAME} or {group}`);
  const prefix = text.slice(0, match.index);
  const suffix = text.slice(match.index + match[0].length);
  if (/[{}]/.test(prefix + suffix)) throw new ConfigError(`${where}: ${JSON.stringify(text)} has a stray brace`);
  return { prefix, placeholder, suffix };
}

/**
 * The placeholder's value a key gives under a key template: `{agent}/` gives `pi-1` for
 * `pi-1/limits`. The value ends at the first occurrence of the text after the placeholder (the
 * rest of the key if there is none); a literal template matches keys that start with it.
 */
function matchKey(template: Template, key: string): string | undefined {
  if (!key.startsWith(template.prefix)) return undefined;
  if (!template.placeholder) return '';
  const rest = key.slice(template.prefix.length);
  if (template.suffix === '') return rest === '' ? undefined : rest;
  const end = rest.indexOf(template.suffix);
  return end <= 0 ? undefined : rest.slice(0, end);
}

/** A field's values as bucket values: a string, number or boolean, or each of an array of them. */
function fieldValues(value: unknown, path: readonly string[]): string[] {
  let at: unknown = value;
  for (const step of path) {
    if (at === null || typeof at !== 'object' || Array.isArray(at)) return [];
    at = (at as Record<string, unknown>)[step];
  }
  const scalar = (v: unknown): string | undefined =>
    typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
  if (Array.isArray(at)) return at.map(scalar).filter((v): v is string => v !== undefined);
  const one = scalar(at);
  return one === undefined ? [] : [one];
}

/**
 * The values a template's placeholder takes for a device: `''` for a template without one;
 * none when the device lacks the label it names. With `list`, each comma-separated item.
 */
function placeholderValues(template: Template, subject: ScopeSubject, list: boolean): string[] {
  const { placeholder } = template;
  if (!placeholder) return [''];
  let values: string[];
  if (placeholder.kind === 'agent') values = [subject.agentId];
  else if (placeholder.kind === 'group') values = [...subject.groups];
  else {
    // Own properties only: a label named like an Object method must not find the method.
    const label = Object.hasOwn(subject.labels, placeholder.name) ? subject.labels[placeholder.name] : undefined;
    values = label === undefined ? [] : [label];
  }
  // A list's items are trimmed ("berlin, paris"); a whole value is compared as it is.
  if (list) values = values.flatMap((v) => v.split(',').map((item) => item.trim()));
  return values.filter((v) => v !== '');
}

/**
 * The scope rules as the write check reads them (hub/op-checks.ts `ScopeView`), with each
 * agent's labels as `labelsOf` gives them now and its access groups (the config's, fixed for
 * the life of the hub, so each agent's are looked up once).
 */
export function scopeView(
  rules: ScopeRules,
  groups: Readonly<Record<string, readonly string[]>>,
  labelsOf: (agentId: string) => Readonly<Record<string, string>>,
): {
  scoped(collection: string): boolean;
  documentBuckets(collection: string, key: string, value: unknown): string[];
  deviceBuckets(agentId: string, collection: string): Set<string>;
} {
  const memberOf = groupsByMember(groups);
  return {
    scoped: (collection) => rules.scoped(collection),
    documentBuckets: (collection, key, value) => rules.bucketsOfDocument(collection, key, value),
    deviceBuckets: (agentId, collection) =>
      new Set(rules.bucketsOfDevice(collection, { agentId, labels: labelsOf(agentId), groups: memberOf.get(agentId) ?? [] })),
  };
}

/** The access groups each agent is in, from the config's group → members lists. */
export function groupsByMember(groups: Readonly<Record<string, readonly string[]>>): Map<string, string[]> {
  const memberOf = new Map<string, string[]>();
  for (const [group, members] of Object.entries(groups)) {
    for (const member of members) {
      const list = memberOf.get(member);
      if (list) list.push(group);
      else memberOf.set(member, [group]);
    }
  }
  return memberOf;
}
