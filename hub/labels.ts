import { ConfigError } from '../shared/errors.js';
import { LABEL_NAME } from './scope-rules.js';

/**
 * Agents' labels: a few name=value pairs per device (`outpost hub agents label`) that scope rules
 * read as `{label.NAME}`. What a label may be is checked here, once, for every way of setting
 * one; the stores apply a change with `mergeLabels` inside the transaction that writes it, so
 * that the bound on their number holds however many writers there are.
 */

/** Labels one agent may have: each costs the hub a lookup per scoped collection when its scope is computed. */
export const MAX_LABELS = 64;

/** Longest label value, in characters: room for a comma-separated list a rule's `in` reads. */
export const MAX_LABEL_VALUE = 256;

/** One agent's labels, by name. */
export type Labels = Readonly<Record<string, string>>;

/** A change to an agent's labels: names to set (to their value) and names to remove. */
export interface LabelChange {
  set: Labels;
  unset: readonly string[];
}

// C0 and C1 controls and DEL: a newline or tab in a value would break every listing of it.
const CONTROL = /\p{Cc}/u;

export function checkLabelName(name: string): void {
  if (!LABEL_NAME.test(name)) {
    throw new ConfigError(
      `label name ${JSON.stringify(name)} is invalid: use 1-64 lowercase letters, digits, dots, underscores or dashes, starting with a letter or digit (e.g. site)`,
    );
  }
}

export function checkLabelValue(name: string, value: string): void {
  const length = [...value].length;
  if (length === 0) {
    throw new ConfigError(
      `label ${name} has no value: give it 1-${MAX_LABEL_VALUE} characters (${name}=berlin), or remove it with ${name}-`,
    );
  }
  if (length > MAX_LABEL_VALUE) {
    throw new ConfigError(`the value of label ${name} is ${length} characters long: use at most ${MAX_LABEL_VALUE}`);
  }
  if (CONTROL.test(value)) {
    throw new ConfigError(`the value of label ${name} contains a control character (a newline, a tab...): use printable characters only`);
  }
  // A document's field is compared as it is: a label " berlin " would match no document.
  if (value.trim() !== value) {
    throw new ConfigError(`the value of label ${name} starts or ends with a space: write ${name}=${value.trim()}`);
  }
}

/**
 * Reads label changes as the CLI takes them, as kubectl does: `name=value` sets a label (the value
 * is everything after the first `=`), `name-` removes one. Each name may appear once.
 */
export function parseLabelChanges(args: readonly string[]): LabelChange {
  const set = noLabels();
  const unset: string[] = [];
  const seen = new Set<string>();
  for (const arg of args) {
    const eq = arg.indexOf('=');
    let name: string;
    if (eq >= 0) {
      name = arg.slice(0, eq);
      checkLabelName(name);
      checkLabelValue(name, arg.slice(eq + 1));
      set[name] = arg.slice(eq + 1);
    } else if (arg.endsWith('-')) {
      name = arg.slice(0, -1);
      checkLabelName(name);
      unset.push(name);
    } else {
      throw new ConfigError(
        `${JSON.stringify(arg)} is not a label change: write name=value to set a label (site=berlin), or name- to remove one (site-)`,
      );
    }
    if (seen.has(name)) throw new ConfigError(`label ${name} is given more than once: set or remove each label once`);
    seen.add(name);
  }
  return { set, unset };
}

/**
 * An agent's labels after a change: `current` with `set` laid over it and `unset` removed, names
 * in order. Refuses an invalid name or value, and a result of more than MAX_LABELS labels.
 */
export function mergeLabels(agentId: string, current: Labels, change: LabelChange): Record<string, string> {
  const next = Object.assign(noLabels(), current);
  for (const [name, value] of Object.entries(change.set)) {
    checkLabelName(name);
    checkLabelValue(name, value);
    next[name] = value;
  }
  for (const name of change.unset) {
    checkLabelName(name);
    delete next[name];
  }
  const count = Object.keys(next).length;
  if (count > MAX_LABELS) {
    throw new ConfigError(
      `agent ${agentId} would have ${count} labels: at most ${MAX_LABELS} are allowed; remove some (name-) in the same command`,
    );
  }
  return sortedLabels(next);
}

/**
 * An empty set of labels. Without a prototype: a name such as `constructor` or `__proto__` is an
 * ordinary key, and a lookup of a label an agent lacks finds nothing.
 */
export function noLabels(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/** The same labels with their names in order, as every listing shows them (without a prototype, see noLabels). */
export function sortedLabels(labels: Labels): Record<string, string> {
  const sorted = noLabels();
  for (const name of Object.keys(labels).sort()) sorted[name] = labels[name]!;
  return sorted;
}

/** `line=3 site=berlin`, for a table: a value with spaces or quotes is written as a JSON string. */
export function formatLabels(labels: Labels): string {
  return Object.entries(labels)
    .map(([name, value]) => `${name}=${/^[^\s"'\\]+$/.test(value) ? value : JSON.stringify(value)}`)
    .join(' ');
}
