import { validate as validateDockerfile } from 'dockerfile-utils';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAllDocuments, parseDocument } from 'yaml';
import { commanderOptions, envOf, flagOf, resolveOptions } from '../../cli/options.js';
import { HUB_OPTIONS } from '../../cli/tables.js';
import { CollectionPolicies, parseHubConfig } from '../../hub/config.js';
import { freePort } from '../helpers/ports.js';
import { CLI } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The hub's deployment files in deploy/hub/: the container image (Dockerfile), the compose file
 * and the Kubernetes manifest. They are parsed and held to the hub's own option table and config
 * loader, and the image's command is run here as a plain process.
 *
 * There is no Docker engine on the machines that run this suite, so the image itself is never
 * built or started here: what is checked is the Dockerfile's text (and hadolint's opinion of it,
 * when hadolint is installed), and that the command, health check and probes it declares work
 * against a real hub started from dist/ with the same arguments. Nor is there a Kubernetes API
 * server to validate the manifest against its schemas: its structure is checked field by field.
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const HUB_DIR = join(REPO, 'deploy/hub');
const DOCKERFILE = join(HUB_DIR, 'Dockerfile');
const COMPOSE_FILE = join(HUB_DIR, 'compose.yaml');
const KUBE_FILE = join(HUB_DIR, 'kubernetes.yaml');
const HUB_YAML = join(HUB_DIR, 'hub.yaml');

const DATA_DIR = '/var/lib/outpost';
const CONFIG_PATH = '/etc/outpost/hub.yaml';
const HUB_ENV_NAMES = new Set(HUB_OPTIONS.map((s) => envOf(s.key)));
const HUB_FLAGS = new Set(HUB_OPTIONS.map((s) => flagOf(s.key)));

// --- helpers -------------------------------------------------------------------------------

/** Parses YAML text that must be exactly one document, without errors or warnings. */
function parseYaml<T>(text: string, what: string): T {
  const doc = parseDocument(text);
  expect(doc.errors.map(String), what).toEqual([]);
  expect(doc.warnings.map(String), what).toEqual([]);
  return doc.toJS() as T;
}

/** The flags in a hub argument list (`--name` or `--name=value`). */
const flagsIn = (args: readonly string[]): string[] => args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!);

/**
 * What `outpost hub` makes of an argument list: parsed by commander with the hub's own options
 * (an unknown flag throws), then resolved from the table (a bad value throws), with `env` as the
 * environment.
 */
function resolveHubArgs(args: readonly string[], env: NodeJS.ProcessEnv = {}): Record<string, unknown> {
  const command = new Command('hub')
    .exitOverride()
    .allowExcessArguments(false)
    .configureOutput({ writeErr: () => undefined });
  for (const option of commanderOptions(HUB_OPTIONS)) command.addOption(option);
  command.parse([...args], { from: 'user' });
  return resolveOptions(HUB_OPTIONS, command.opts(), env);
}

/** Every OUTPOST_* name in a text. */
const outpostNames = (text: string): string[] => [...new Set(text.match(/\bOUTPOST_[A-Z0-9_]*[A-Z0-9]\b/g) ?? [])];

/** `30s`, `1m30s`, `2m` in seconds. */
function durationSeconds(text: string): number {
  const match = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!match || (match[1] === undefined && match[2] === undefined)) throw new Error(`not a duration: ${text}`);
  return Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0);
}

/** A Kubernetes quantity (`250m`, `2`, `256Mi`, `1Gi`) as a number. */
function quantity(text: string | number): number {
  if (typeof text === 'number') return text;
  const match = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(text);
  if (!match) throw new Error(`not a quantity: ${text}`);
  const factor: Record<string, number> = { m: 1e-3, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(match[1]) * (match[2] === undefined ? 1 : factor[match[2]]!);
}

// --- Dockerfile ----------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
  stage: number;
}

/** Instructions (continuation lines joined, comments dropped) and the comment text. */
function parseDockerfile(text: string): { instructions: Instruction[]; comments: string } {
  const instructions: Instruction[] = [];
  const comments: string[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#')) {
      comments.push(line.replace(/^#\s?/, ''));
      continue;
    }
    if (line === '' && pending === '') continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const whole = `${pending}${line}`.trim();
    pending = '';
    if (whole === '') continue;
    const keyword = whole.split(/\s+/)[0]!;
    const upper = keyword.toUpperCase();
    if (upper === 'FROM') stage++;
    instructions.push({ keyword: upper, args: whole.slice(keyword.length).trim(), stage });
  }
  expect(pending, 'the Dockerfile ends in a continuation line').toBe('');
  return { instructions, comments: comments.join('\n') };
}

const dockerfileText = readFileSync(DOCKERFILE, 'utf8');
const dockerfile = parseDockerfile(dockerfileText);
const stages = dockerfile.instructions.filter((i) => i.keyword === 'FROM');
const finalStage = stages.length - 1;
const inStage = (stage: number, keyword: string): Instruction[] =>
  dockerfile.instructions.filter((i) => i.stage === stage && i.keyword === keyword);

/** A JSON exec form (`["node", "..."]`), which must be an array of strings. */
function execForm(text: string): string[] {
  const value: unknown = JSON.parse(text);
  expect(Array.isArray(value) && value.every((v) => typeof v === 'string'), text).toBe(true);
  return value as string[];
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
}
const parseCopy = (args: string): Copy => {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const paths = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return { ...(from !== undefined && { from }), sources: paths.slice(0, -1), dest: paths.at(-1)! };
};

/** The HEALTHCHECK's options and its command in exec form. */
function healthcheck(): { options: Record<string, string>; command: string[] } {
  const found = inStage(finalStage, 'HEALTHCHECK');
  expect(found).toHaveLength(1);
  const args = found[0]!.args;
  const at = args.indexOf('CMD ');
  expect(at, 'HEALTHCHECK ... CMD [...]').toBeGreaterThanOrEqual(0);
  const options = Object.fromEntries([...args.slice(0, at).matchAll(/--([a-z-]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  return { options, command: execForm(args.slice(at + 4).trim()) };
}

const imageCmd = (): string[] => {
  const cmds = inStage(finalStage, 'CMD');
  expect(cmds).toHaveLength(1);
  return execForm(cmds[0]!.args);
};

/** The words of the final stage's VOLUME and EXPOSE instructions. */
const volumes = (): string[] =>
  inStage(finalStage, 'VOLUME').flatMap((i) => (i.args.startsWith('[') ? execForm(i.args) : i.args.split(/\s+/)));
const exposed = (): number[] =>
  inStage(finalStage, 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .map((p) => Number(p.split('/')[0]));

describe('deploy/hub/Dockerfile', () => {
  it('builds on node:20-bookworm and runs on node:20-bookworm-slim', () => {
    expect(stages.map((s) => s.args)).toEqual(['node:20-bookworm AS build', 'node:20-bookworm-slim']);
  });

  it('build stage: copies what the build needs, then npm ci, npm run build, npm prune --omit=dev', () => {
    const runs = inStage(0, 'RUN').map((i) => i.args);
    const order = ['npm ci', 'npm run build', 'npm prune --omit=dev'].map((command) => {
      const index = runs.findIndex((r) => r.startsWith(command));
      expect(index, `RUN ${command} in the build stage`).toBeGreaterThanOrEqual(0);
      return index;
    });
    expect(order).toEqual([...order].sort((a, b) => a - b));
    // npm ci runs `prepare` (the build), so the sources must be there before it: every directory
    // tsconfig.build.json compiles, the lockfile and both tsconfig files.
    const npmCi = dockerfile.instructions.findIndex((i) => i.stage === 0 && i.keyword === 'RUN' && i.args.startsWith('npm ci'));
    const copied = dockerfile.instructions
      .slice(0, npmCi)
      .filter((i) => i.stage === 0 && i.keyword === 'COPY')
      .flatMap((i) => parseCopy(i.args).sources.map((s) => s.replace(/\/$/, '')));
    const build = JSON.parse(readFileSync(join(REPO, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', ...build.include]) {
      expect(copied, needed).toContain(needed);
      expect(existsSync(join(REPO, needed)), `${needed} exists in the repository`).toBe(true);
    }
  });

  it('runtime stage: dist, production node_modules and package.json from the build, hub.yaml in /etc/outpost; no npm', () => {
    const copies = inStage(finalStage, 'COPY').map((i) => parseCopy(i.args));
    const fromBuild = (src: string): Copy | undefined =>
      copies.find((c) => c.from === 'build' && c.sources.some((s) => s.replace(/\/$/, '') === src));
    expect(fromBuild('/app/dist')?.dest.replace(/\/$/, '')).toMatch(/^(\.\/)?dist$/);
    expect(fromBuild('/app/node_modules')?.dest.replace(/\/$/, '')).toMatch(/^(\.\/)?node_modules$/);
    // "type": "module" in package.json is what makes Node load dist/**/*.js as ES modules.
    expect(fromBuild('/app/package.json')?.dest).toMatch(/^(\.\/)?(package\.json)?$/);
    expect(copies).toContainEqual({ sources: ['deploy/hub/hub.yaml'], dest: CONFIG_PATH });
    for (const run of inStage(finalStage, 'RUN'))
      expect(run.args, 'nothing is installed at run time').not.toMatch(/\bnpm\b|apt-get|curl|wget/);
    expect(inStage(finalStage, 'WORKDIR').at(-1)?.args).toBe('/app');
  });

  it('runs as the non-root user node, with a writable data volume made before VOLUME', () => {
    const users = inStage(finalStage, 'USER');
    expect(users.at(-1)?.args).toBe('node');
    expect(users.map((u) => u.args.split(':')[0])).not.toContain('root');
    expect(users.map((u) => u.args.split(':')[0])).not.toContain('0');
    expect(volumes()).toEqual([DATA_DIR]);
    // Changes to a volume's directory after VOLUME are discarded: mkdir and chown come first.
    const all = dockerfile.instructions;
    const volumeAt = all.findIndex((i) => i.stage === finalStage && i.keyword === 'VOLUME');
    const chownAt = all.findIndex((i) => i.stage === finalStage && i.keyword === 'RUN' && i.args.includes(`chown node:node ${DATA_DIR}`));
    expect(chownAt, `RUN ... chown node:node ${DATA_DIR}`).toBeGreaterThanOrEqual(0);
    expect(chownAt).toBeLessThan(volumeAt);
  });

  it('exposes MQTT 1883, MQTT over TLS 8883 and HTTP 8080', () => {
    expect(exposed().sort((a, b) => a - b)).toEqual([1883, 8080, 8883]);
  });

  it('checks its health with node (no curl in slim) against http://127.0.0.1:8080/healthz', () => {
    const { options, command } = healthcheck();
    expect(command[0]).toBe('node');
    expect(command.slice(1, 2)).toEqual(['-e']);
    expect(command[2]).toContain('http://127.0.0.1:8080/healthz');
    expect(durationSeconds(options.timeout!)).toBeLessThan(durationSeconds(options.interval!));
    expect(Number(options.retries)).toBeGreaterThanOrEqual(1);
  });

  it('CMD runs the hub with real hub options: data in the volume, the config it copied, HTTP on 0.0.0.0:8080', () => {
    const cmd = imageCmd();
    expect(cmd).toEqual(['node', 'dist/cli/outpost.js', 'hub', '--data', DATA_DIR, '--config', CONFIG_PATH, '--http', '0.0.0.0:8080']);
    for (const flag of flagsIn(cmd)) expect(HUB_FLAGS, `${flag} is an option of outpost hub`).toContain(flag);
    const o = resolveHubArgs(cmd.slice(3));
    expect(o).toMatchObject({ data: DATA_DIR, config: CONFIG_PATH, http: { host: '0.0.0.0', port: 8080 }, port: 1883 });
    expect(exposed()).toContain((o.http as { port: number }).port);
    expect(exposed()).toContain(o.port);
  });

  it('names only OUTPOST_* variables the hub reads, says OUTPOST_ADMIN_TOKEN is required, and how to ignore files', () => {
    for (const name of outpostNames(dockerfileText)) expect(HUB_ENV_NAMES, name).toContain(name);
    for (const env of inStage(finalStage, 'ENV')) {
      for (const [, name] of env.args.matchAll(/(\w+)=/g)) if (name!.startsWith('OUTPOST_')) expect(HUB_ENV_NAMES, name).toContain(name);
    }
    expect(dockerfile.comments).toMatch(/OUTPOST_ADMIN_TOKEN MUST be set/);
    // .dockerignore guidance, in comments only (the repository ships none).
    expect(dockerfile.comments).toContain('.dockerignore');
    for (const entry of ['node_modules', 'data', '.git'])
      expect(dockerfile.comments).toMatch(new RegExp(`^\\s+${entry.replace('.', '\\.')}$`, 'm'));
  });

  // hadolint is not packaged for Debian; dockerfile-utils (the linter behind editors' Dockerfile
  // support) runs from npm everywhere the tests run, and says nothing of a sound file.
  it('passes the Dockerfile linter: no errors, no warnings (deprecated or invalid instructions, bad ports, flags)', () => {
    const problems = validateDockerfile(readFileSync(DOCKERFILE, 'utf8')).map(
      (d) => `line ${d.range.start.line + 1}: ${typeof d.message === 'string' ? d.message : d.message.value}`,
    );
    expect(problems).toEqual([]);
    // The linter is alive: it does object to a broken file.
    expect(validateDockerfile('FROM node:20\nEXPOSE http\nMAINTAINER someone\n').length).toBe(2);
  });
});

// --- compose.yaml --------------------------------------------------------------------------

interface ComposeService {
  build?: { context: string; dockerfile: string };
  image?: string;
  restart?: string;
  ports?: (string | number)[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test: string[]; interval?: string; timeout?: string; retries?: number; start_period?: string };
  stop_grace_period?: string;
  read_only?: boolean;
  tmpfs?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const composeText = readFileSync(COMPOSE_FILE, 'utf8');
const compose = (): ComposeService => {
  const file = parseYaml<ComposeFile>(composeText, COMPOSE_FILE);
  expect(Object.keys(file.services)).toEqual(['hub']);
  return file.services.hub!;
};

/** `[ip:]published:container[/protocol]` as its parts. */
function composePort(spec: string | number): { ip?: string; published?: number; container: number } {
  const parts = String(spec)
    .replace(/\/(tcp|udp)$/, '')
    .split(':');
  const container = Number(parts.pop());
  const published = parts.length ? Number(parts.pop()) : undefined;
  const ip = parts.length ? parts.join(':') : undefined;
  return { ...(ip !== undefined && { ip }), ...(published !== undefined && { published }), container };
}

describe('deploy/hub/compose.yaml', () => {
  it('builds the image from the repository root with deploy/hub/Dockerfile', () => {
    const hub = compose();
    expect(hub.build).toEqual({ context: '../..', dockerfile: 'deploy/hub/Dockerfile' });
    const context = resolve(HUB_DIR, hub.build!.context);
    expect(resolve(context)).toBe(resolve(REPO));
    expect(existsSync(join(context, hub.build!.dockerfile))).toBe(true);
    expect(hub.image).toMatch(/^[a-z0-9./-]+:[\w.-]+$/);
  });

  it('publishes MQTT 1883 and HTTP 8080, keeps the data in a named volume, restarts unless stopped', () => {
    const hub = compose();
    const ports = (hub.ports ?? []).map(composePort);
    expect(ports.map((p) => p.container).sort((a, b) => a - b)).toEqual([1883, 8080]);
    expect(ports.find((p) => p.container === 1883)).toEqual({ published: 1883, container: 1883 });
    expect(ports.find((p) => p.container === 8080)?.published).toBe(8080);
    expect(hub.restart).toBe('unless-stopped');
    const [volume, target, ...rest] = (hub.volumes ?? [])[0]!.split(':');
    expect(target).toBe(volumes()[0]);
    expect(rest).toEqual([]);
    expect(volume, 'a named volume, not a bind mount').toMatch(/^[a-z][\w.-]*$/);
    expect(parseYaml<ComposeFile>(composeText, COMPOSE_FILE).volumes).toHaveProperty(volume!);
    expect(durationSeconds(hub.stop_grace_period!)).toBeGreaterThanOrEqual(30);
  });

  it('requires OUTPOST_ADMIN_TOKEN from the environment or .env, and sets only variables the hub reads', () => {
    const env = compose().environment ?? {};
    expect(env.OUTPOST_ADMIN_TOKEN).toMatch(/^\$\{OUTPOST_ADMIN_TOKEN:\?.+\}$/);
    for (const name of Object.keys(env)) expect(HUB_ENV_NAMES, name).toContain(name);
    // The commented-out examples (TLS) too.
    for (const name of outpostNames(composeText)) expect(HUB_ENV_NAMES, name).toContain(name);
  });

  it("has the image's health check, and writes nowhere but the volume and /tmp", () => {
    const hub = compose();
    expect(hub.healthcheck?.test).toEqual(['CMD', ...healthcheck().command]);
    expect(durationSeconds(hub.healthcheck!.timeout!)).toBeLessThan(durationSeconds(hub.healthcheck!.interval!));
    expect(hub.read_only).toBe(true);
    expect(hub.tmpfs).toEqual(['/tmp']);
  });
});

// --- kubernetes.yaml -----------------------------------------------------------------------

interface Meta {
  name: string;
  labels?: Record<string, string>;
}
interface Probe {
  httpGet?: { path: string; port: number | string };
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[] };
  emptyDir?: object;
  secret?: { secretName: string };
}
interface PodSpec {
  containers: Container[];
  volumes?: Volume[];
  terminationGracePeriodSeconds?: number;
  enableServiceLinks?: boolean;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; fsGroup?: number };
}
interface StatefulSet {
  replicas: number;
  serviceName: string;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: Meta; spec: PodSpec };
  volumeClaimTemplates: { metadata: Meta; spec: { accessModes: string[]; resources: { requests: { storage: string } } } }[];
}
interface ServiceSpec {
  type?: string;
  clusterIP?: string;
  selector: Record<string, string>;
  ports: { name?: string; port: number; targetPort?: number | string; protocol?: string }[];
}
interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  type?: string;
  spec?: unknown;
}

const kubeText = readFileSync(KUBE_FILE, 'utf8');
function kube(): KubeObject[] {
  const docs = parseAllDocuments(kubeText);
  expect(Array.isArray(docs), 'parseAllDocuments returned documents').toBe(true);
  const list = docs as ReturnType<typeof parseDocument>[];
  for (const doc of list) {
    expect(doc.errors.map(String)).toEqual([]);
    expect(doc.warnings.map(String)).toEqual([]);
  }
  return list.map((d) => d.toJS() as KubeObject | null).filter((o): o is KubeObject => o !== null);
}
const one = <T>(objects: KubeObject[], kind: string, name?: string): KubeObject & { spec: T } => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind} ${name ?? ''}`).toHaveLength(1);
  return found[0] as KubeObject & { spec: T };
};
const statefulSet = (): StatefulSet => one<StatefulSet>(kube(), 'StatefulSet').spec;
const hubContainer = (): Container => {
  const containers = statefulSet().template.spec.containers;
  expect(containers).toHaveLength(1);
  return containers[0]!;
};
const services = (): (KubeObject & { spec: ServiceSpec })[] =>
  kube().filter((o) => o.kind === 'Service') as (KubeObject & { spec: ServiceSpec })[];

/** The container port a probe or Service target names (by name or number). */
function containerPort(target: number | string | undefined): number | undefined {
  const ports = hubContainer().ports ?? [];
  return typeof target === 'number'
    ? ports.find((p) => p.containerPort === target)?.containerPort
    : ports.find((p) => p.name === target)?.containerPort;
}

/**
 * The variables Kubernetes injects into a pod for a Service (when service links are on):
 * NAME_SERVICE_HOST, NAME_SERVICE_PORT[_PORTNAME], NAME_PORT, NAME_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR].
 */
function serviceLinkVariables(name: string, ports: ServiceSpec['ports']): string[] {
  const prefix = name.toUpperCase().replace(/-/g, '_');
  return [
    `${prefix}_SERVICE_HOST`,
    `${prefix}_SERVICE_PORT`,
    `${prefix}_PORT`,
    ...ports.flatMap((p) => {
      const base = `${prefix}_PORT_${p.port}_${(p.protocol ?? 'TCP').toUpperCase()}`;
      return [
        ...(p.name ? [`${prefix}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, '_')}`] : []),
        base,
        `${base}_PROTO`,
        `${base}_PORT`,
        `${base}_ADDR`,
      ];
    }),
  ];
}

describe('deploy/hub/kubernetes.yaml', () => {
  it('parses: a Secret, a ConfigMap, a StatefulSet and two Services', () => {
    expect(kube().map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.name}`)).toEqual([
      'v1 Secret outpost-hub-admin',
      'v1 ConfigMap outpost-hub-config',
      'apps/v1 StatefulSet outpost-hub',
      'v1 Service outpost-hub-headless',
      'v1 Service outpost-hub',
    ]);
  });

  it('the Secret is a placeholder to replace, and left empty the hub refuses to start', () => {
    const secret = one<never>(kube(), 'Secret');
    expect(secret.type).toBe('Opaque');
    expect(secret.stringData).toEqual({ 'admin-token': '' });
    expect(kubeText).toMatch(/# REPLACE before applying/);
    expect(() => resolveOptions(HUB_OPTIONS, {}, { OUTPOST_ADMIN_TOKEN: '' })).toThrow(/OUTPOST_ADMIN_TOKEN: expected a non-empty string/);
  });

  it("the ConfigMap holds deploy/hub/hub.yaml, which the hub's config loader accepts", () => {
    const configMap = one<never>(kube(), 'ConfigMap');
    const text = configMap.data?.['hub.yaml'];
    expect(text).toBeTypeOf('string');
    const inCluster = parseYaml<unknown>(text!, 'hub.yaml in the ConfigMap');
    // A copy, and it must stay one: update the ConfigMap when deploy/hub/hub.yaml changes.
    expect(inCluster, 'the ConfigMap differs from deploy/hub/hub.yaml').toEqual(
      parseYaml<unknown>(readFileSync(HUB_YAML, 'utf8'), HUB_YAML),
    );
    const config = parseHubConfig(inCluster, "the ConfigMap's hub.yaml");
    const policies = new CollectionPolicies(config);
    expect(Object.keys(config.collections).length).toBeGreaterThan(0);
    // Its schemas compiled: the example's sensors schema refuses a reading without celsius.
    expect(policies.get('sensors')?.check({ celsius: 'warm' })).toBeTypeOf('string');
    expect(policies.get('sensors')?.check({ celsius: 21.5 })).toBeUndefined();
  });

  it("runs exactly one replica of the image's command, the same as compose, with the Secret as OUTPOST_ADMIN_TOKEN", () => {
    const set = statefulSet();
    expect(set.replicas).toBe(1);
    expect(kubeText).toMatch(/SQLite, a single writer/);
    const c = hubContainer();
    expect(c.image).toBe(compose().image);
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    expect(argv).toEqual(imageCmd());
    for (const flag of flagsIn(argv)) expect(HUB_FLAGS, `${flag} is an option of outpost hub`).toContain(flag);
    const names = (c.env ?? []).map((e) => e.name);
    expect(names).toContain('OUTPOST_ADMIN_TOKEN');
    for (const name of names.filter((n) => n.startsWith('OUTPOST_'))) expect(HUB_ENV_NAMES, name).toContain(name);
    // ...and the commented-out TLS example.
    for (const [, name] of kubeText.matchAll(/#\s*- name: (OUTPOST_\w+)/g)) expect(HUB_ENV_NAMES, name).toContain(name);
    const token = c.env!.find((e) => e.name === 'OUTPOST_ADMIN_TOKEN')!.valueFrom?.secretKeyRef;
    const secret = one<never>(kube(), 'Secret');
    expect(token?.name).toBe(secret.metadata.name);
    expect(Object.keys(secret.stringData ?? secret.data ?? {})).toContain(token?.key);
    // The resolved options, as the hub would see them (token given).
    expect(resolveHubArgs(c.args ?? [], { OUTPOST_ADMIN_TOKEN: 'x' })).toMatchObject({
      data: DATA_DIR,
      config: CONFIG_PATH,
      adminToken: 'x',
    });
  });

  it('probes /readyz for readiness and /healthz for liveness on the HTTP port', () => {
    const c = hubContainer();
    const httpPort = (resolveHubArgs(c.args ?? []).http as { port: number }).port;
    expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      if (probe === undefined) continue;
      expect(containerPort(probe.httpGet?.port)).toBe(httpPort);
    }
    expect(containerPort('mqtt')).toBe(1883);
  });

  it('keeps the data in a claim per replica, mounts the config where --config reads it, /tmp as emptyDir', () => {
    const set = statefulSet();
    const c = hubContainer();
    const mounts = new Map((c.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    const volumesByName = new Map((set.template.spec.volumes ?? []).map((v) => [v.name, v]));

    const data = mounts.get(DATA_DIR);
    expect(data?.readOnly).not.toBe(true);
    const claim = set.volumeClaimTemplates.find((t) => t.metadata.name === data?.name);
    expect(claim?.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(quantity(claim!.spec.resources.requests.storage)).toBeGreaterThanOrEqual(2 ** 30);

    const configDir = mounts.get(posix.dirname(CONFIG_PATH));
    expect(configDir?.readOnly).toBe(true);
    const configVolume = volumesByName.get(configDir!.name)?.configMap;
    expect(configVolume?.name).toBe(one<never>(kube(), 'ConfigMap').metadata.name);
    expect(configVolume?.items ?? [{ key: 'hub.yaml', path: 'hub.yaml' }]).toContainEqual({
      key: 'hub.yaml',
      path: posix.basename(CONFIG_PATH),
    });

    expect(volumesByName.get(mounts.get('/tmp')!.name)?.emptyDir).toBeDefined();
    for (const mount of c.volumeMounts ?? []) {
      expect(volumesByName.has(mount.name) || set.volumeClaimTemplates.some((t) => t.metadata.name === mount.name), mount.name).toBe(true);
    }
  });

  it('runs as non-root with a read-only root file system, requests and limits resources', () => {
    const pod = statefulSet().template.spec;
    const c = hubContainer();
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    // The image's USER is the name `node`: Kubernetes needs its number to enforce runAsNonRoot.
    expect(pod.securityContext?.runAsUser).toBe(1000);
    expect(pod.securityContext?.fsGroup).toBe(1000);
    expect(c.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    for (const resource of ['cpu', 'memory']) {
      const request = c.resources?.requests?.[resource];
      const limit = c.resources?.limits?.[resource];
      expect(request, `requests.${resource}`).toBeDefined();
      expect(limit, `limits.${resource}`).toBeDefined();
      expect(quantity(request!)).toBeLessThanOrEqual(quantity(limit!));
    }
    // The JavaScript heap fits in the memory limit.
    const heap = /--max-old-space-size=(\d+)/.exec(c.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '')?.[1];
    if (heap !== undefined) expect(Number(heap) * 2 ** 20).toBeLessThan(quantity(c.resources!.limits!.memory!));
  });

  it('gives the hub time to drain on SIGTERM', () => {
    expect(statefulSet().template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
  });

  it("Services: the StatefulSet's headless one, and one exposing 1883 and 8080 to the pod", () => {
    const set = statefulSet();
    const podLabels = set.template.metadata.labels ?? {};
    expect(podLabels).toMatchObject(set.selector.matchLabels);
    const headless = services().find((s) => s.metadata.name === set.serviceName);
    expect(headless?.spec.clusterIP).toBe('None');
    const main = one<ServiceSpec>(kube(), 'Service', 'outpost-hub').spec;
    expect(['ClusterIP', 'LoadBalancer']).toContain(main.type ?? 'ClusterIP');
    for (const service of services()) {
      expect(podLabels, service.metadata.name).toMatchObject(service.spec.selector);
      for (const port of service.spec.ports)
        expect(containerPort(port.targetPort ?? port.port), `${service.metadata.name} ${port.port}`).toBe(port.port);
    }
    expect(main.ports.map((p) => p.port).sort((a, b) => a - b)).toEqual([1883, 8080]);
  });

  it('turns service links off, and no Service of its own would inject a variable the hub reads', () => {
    expect(statefulSet().template.spec.enableServiceLinks).toBe(false);
    for (const service of services()) {
      for (const name of serviceLinkVariables(service.metadata.name, service.spec.ports)) expect(HUB_ENV_NAMES, name).not.toContain(name);
    }
    // The control: a Service named `outpost` would set OUTPOST_PORT=tcp://..., which the hub reads.
    expect(serviceLinkVariables('outpost', [{ port: 1883 }]).filter((n) => HUB_ENV_NAMES.has(n))).toEqual(['OUTPOST_PORT']);
  });
});

// --- the image's command, run here ---------------------------------------------------------

/** A hub process with an environment of our own: no OUTPOST_* variable leaks in from outside. */
interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}
function startHub(args: string[], env: Record<string, string>): Started {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OUTPOST_')));
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...clean, ...env } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve_) => child.once('exit', (code) => resolve_(code)));
  return { child, output: () => output, exited };
}

describe("the image's CMD and HEALTHCHECK, run as a plain process (no Docker engine here)", () => {
  const running: Started[] = [];
  afterEach(async () => {
    for (const p of running.splice(0)) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await p.exited;
    }
  });

  /** The CMD with the image's paths mapped to this machine, HTTP on a free port of 0.0.0.0. */
  async function imageCommand(): Promise<{ args: string[]; httpPort: number; env: Record<string, string> }> {
    const [httpPort, mqttPort] = await Promise.all([freePort(), freePort()]);
    const data = join(tempDir('hub-image'), 'data');
    const hubYamlCopy = inStage(finalStage, 'COPY')
      .map((i) => parseCopy(i.args))
      .find((c) => c.dest === CONFIG_PATH)!;
    const mapped: Record<string, string> = {
      [DATA_DIR]: data,
      [CONFIG_PATH]: join(REPO, hubYamlCopy.sources[0]!),
      '0.0.0.0:8080': `0.0.0.0:${httpPort}`,
    };
    const cmd = imageCmd();
    expect(cmd.slice(0, 2)).toEqual(['node', 'dist/cli/outpost.js']);
    const args = cmd.slice(2).map((a) => mapped[a] ?? a);
    // The CMD leaves the MQTT port and address to their defaults: set them the way a deployment
    // would, through OUTPOST_* variables (a free port, loopback only).
    return { args, httpPort, env: { OUTPOST_PORT: String(mqttPort), OUTPOST_HOST: '127.0.0.1' } };
  }

  const runHealthcheck = (httpPort: number): number | null => {
    const [node, ...rest] = healthcheck().command;
    expect(node).toBe('node');
    const r = spawnSync(
      process.execPath,
      rest.map((a) => a.replace('127.0.0.1:8080/', `127.0.0.1:${httpPort}/`)),
      { encoding: 'utf8', timeout: 15_000, cwd: tempDir('healthcheck') },
    );
    return r.status;
  };

  it('refuses to start without OUTPOST_ADMIN_TOKEN, or with the empty placeholder, and says so', async () => {
    const { args, env } = await imageCommand();
    const bare = startHub(args, env);
    running.push(bare);
    expect(await bare.exited, bare.output()).toBe(1);
    expect(bare.output()).toMatch(/without a token: set --admin-token \(OUTPOST_ADMIN_TOKEN\)/);

    const empty = startHub(args, { ...env, OUTPOST_ADMIN_TOKEN: '' });
    running.push(empty);
    expect(await empty.exited, empty.output()).toBe(1);
    expect(empty.output()).toMatch(/OUTPOST_ADMIN_TOKEN: expected a non-empty string/);
  });

  it('with the token: healthy, ready, admin API behind the token; stops cleanly on SIGTERM in time', async () => {
    const { args, httpPort, env } = await imageCommand();
    const token = 'test-admin-token';
    const hub = startHub(args, { ...env, OUTPOST_ADMIN_TOKEN: token });
    running.push(hub);
    await waitFor(`hub started\n${hub.output()}`, () => hub.output().includes('hub started'), 15_000);

    expect(runHealthcheck(httpPort), 'the HEALTHCHECK command against the running hub').toBe(0);
    const url = (path: string): string => `http://127.0.0.1:${httpPort}${path}`;
    // What the Kubernetes probes ask, without a token.
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/readyz'))).status).toBe(200);
    expect((await fetch(url('/v1/agents'))).status).toBe(401);
    expect((await fetch(url('/v1/agents'), { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);

    const started = Date.now();
    hub.child.kill('SIGTERM');
    expect(await hub.exited, hub.output()).toBe(0);
    const took = (Date.now() - started) / 1000;
    expect(took).toBeLessThan(durationSeconds(compose().stop_grace_period!));
    expect(took).toBeLessThan(statefulSet().template.spec.terminationGracePeriodSeconds!);
    expect(runHealthcheck(httpPort), 'the HEALTHCHECK command with nothing listening').toBe(1);
  });

  it("the ConfigMap's hub.yaml starts the hub too", async () => {
    const { args, env } = await imageCommand();
    const file = join(tempDir('hub-configmap'), 'hub.yaml');
    writeFileSync(file, one<never>(kube(), 'ConfigMap').data!['hub.yaml']!);
    const at = args.indexOf('--config');
    const hub = startHub([...args.slice(0, at + 1), file, ...args.slice(at + 2)], { ...env, OUTPOST_ADMIN_TOKEN: 'x' });
    running.push(hub);
    await waitFor(`hub started\n${hub.output()}`, () => hub.output().includes('hub started'), 15_000);
  });
});
