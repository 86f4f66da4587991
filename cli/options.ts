import { Option } from 'commander';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseHostPort } from './address.js';
import { ConfigError } from '../shared/errors.js';

/**
 * One declared option: the YAML key, the `--flag` and the `OUTPOST_*` variable all derive from
 * `key`; `--help` and docs/CONFIGURATION.md are generated from the same table.
 */
export interface OptionSpec {
  key: string;
  type: 'string' | 'integer' | 'boolean' | 'address' | 'list' | 'enum';
  description: string;
  values?: readonly string[];
  default?: unknown;
  required?: boolean;
  placeholder?: string;
  /** For integers: the smallest value that makes sense (a limit of 0 would refuse every client). */
  min?: number;
  /** For strings: the form a value must have, and how to say it. */
  pattern?: { regex: RegExp; description: string };
  /** Left out of --help and the reference (testing aids). */
  hidden?: boolean;
}

export const flagOf = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
export const envOf = (key: string): string => `OUTPOST_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** Commander options for a table, without defaults (so that what was given is known). */
export function commanderOptions(table: readonly OptionSpec[]): Option[] {
  return table.map((spec) => {
    const flag = spec.type === 'boolean' ? flagOf(spec.key) : `${flagOf(spec.key)} <${spec.placeholder ?? spec.type}>`;
    const extra = [`env ${envOf(spec.key)}`, ...(spec.default !== undefined ? [`default ${JSON.stringify(spec.default)}`] : [])];
    const option = new Option(flag, `${spec.description} (${extra.join(', ')})`);
    if (spec.hidden) option.hideHelp();
    return option;
  });
}

/**
 * Resolves every option of a table: flag, then environment, then the YAML file, then the
 * default. Throws ConfigError naming the option and where its value came from.
 */
export function resolveOptions(
  table: readonly OptionSpec[],
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  file?: string,
): Record<string, unknown> {
  const fromFile = file === undefined ? {} : readConfigFile(file, table);
  const resolved: Record<string, unknown> = {};
  for (const spec of table) {
    const env_ = env[envOf(spec.key)];
    const [raw, source] =
      flags[spec.key] !== undefined
        ? [flags[spec.key], `option ${flagOf(spec.key)}`]
        : env_ !== undefined
          ? [env_, `environment variable ${envOf(spec.key)}`]
          : fromFile[spec.key] !== undefined
            ? [fromFile[spec.key], `${spec.key} in ${file}`]
            : [undefined, ''];
    if (raw === undefined) {
      if (spec.required)
        throw new ConfigError(`missing required option ${flagOf(spec.key)} (or ${envOf(spec.key)}, or ${spec.key} in the config file)`);
      if (spec.default !== undefined) resolved[spec.key] = convert(spec, spec.default, `the default of ${flagOf(spec.key)}`);
      continue;
    }
    resolved[spec.key] = convert(spec, raw, source);
  }
  return resolved;
}

function readConfigFile(file: string, table: readonly OptionSpec[]): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(file, 'utf8')) ?? {};
  } catch (cause) {
    throw new ConfigError(`cannot read config file ${file}: ${(cause as Error).message}`, { cause });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new ConfigError(`config file ${file} must be a mapping of option: value`);
  const known = new Set(table.map((s) => s.key));
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new ConfigError(`unknown option ${key} in ${file}; known options: ${[...known].join(', ')}`);
  }
  return parsed as Record<string, unknown>;
}

function convert(spec: OptionSpec, raw: unknown, source: string): unknown {
  const fail = (expected: string): never => {
    throw new ConfigError(`${source}: expected ${expected}, got ${JSON.stringify(raw)}`);
  };
  const text = typeof raw === 'string' ? raw.trim() : raw;
  switch (spec.type) {
    case 'string':
      if (typeof text !== 'string' || text === '') return fail('a non-empty string');
      return !spec.pattern || spec.pattern.regex.test(text) ? text : fail(spec.pattern.description);
    case 'integer': {
      const n = typeof text === 'number' ? text : typeof text === 'string' && /^-?\d+$/.test(text) ? Number(text) : Number.NaN;
      if (!Number.isSafeInteger(n)) return fail('a whole number');
      return spec.min === undefined || n >= spec.min ? n : fail(`a whole number of at least ${spec.min}`);
    }
    case 'boolean':
      if (typeof text === 'boolean') return text;
      if (text === 'true' || text === '1' || text === 'yes') return true;
      if (text === 'false' || text === '0' || text === 'no') return false;
      return fail('true or false');
    case 'address':
      try {
        return parseHostPort(String(text));
      } catch {
        return fail('host:port, e.g. 127.0.0.1:7801');
      }
    case 'list': {
      const items = Array.isArray(text) ? text.map(String) : typeof text === 'string' ? text.split(',') : fail('a list');
      return items.map((s) => s.trim()).filter(Boolean);
    }
    case 'enum':
      return typeof text === 'string' && spec.values!.includes(text) ? text : fail(`one of ${spec.values!.join(', ')}`);
  }
}

/** The Markdown reference of a table, for docs/CONFIGURATION.md. */
export function renderReference(title: string, intro: string, table: readonly OptionSpec[]): string {
  const rows = table
    .filter((s) => !s.hidden)
    .map((s) => {
      const type = s.type === 'enum' ? s.values!.join(' \\| ') : s.type;
      const def = s.required ? 'required' : s.default === undefined ? '—' : `\`${JSON.stringify(s.default)}\``;
      return `| \`${s.key}\` | \`${flagOf(s.key)}\` | \`${envOf(s.key)}\` | ${type} | ${def} | ${s.description} |`;
    });
  return [
    `## ${title}`,
    '',
    intro,
    '',
    '| key | flag | environment | type | default | description |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
