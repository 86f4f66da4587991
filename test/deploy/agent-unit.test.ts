import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validate as isValidCron } from 'node-cron';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { tempDir } from '../helpers/temp.js';
import { resolveOptions } from '../../cli/options.js';
import { AGENT_OPTIONS } from '../../cli/tables.js';
import { which } from '../helpers/which.js';

/**
 * The Raspberry Pi deployment in deploy/agent/: the systemd unit, the example configuration and
 * the install script. Tools that may be missing (systemd-analyze, shellcheck) skip their checks
 * with the reason in the test name; CI installs them (apt packages `systemd` and `shellcheck`).
 */

const AGENT_DIR = fileURLToPath(new URL('../../deploy/agent/', import.meta.url));
const UNIT_FILE = join(AGENT_DIR, 'outpost-agent.service');
const CONFIG_FILE = join(AGENT_DIR, 'agent.yaml');
const INSTALL_SH = join(AGENT_DIR, 'install.sh');

const EXEC_START = '/usr/bin/node /opt/outpost/dist/cli/outpost.js agent --config /etc/outpost/agent.yaml';

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Result {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000, ...options });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const show = (r: Result): string => `exit ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

const warned = new Set<string>();
/** Names a test after the tool it needs, so that a skip says why in the report. */
function needs(tool: string | undefined, name: string, aptPackage: string): string {
  if (tool) return '';
  if (!warned.has(name)) console.warn(`test/deploy: ${name} is not installed, its checks are skipped (apt-get install ${aptPackage})`);
  warned.add(name);
  return ` [SKIPPED: ${name} not installed; apt-get install ${aptPackage}]`;
}

const systemdAnalyze = which('systemd-analyze');
const shellcheck = which('shellcheck');
/** systemd's version: --recursive-errors and `security --offline` came with 250. */
const systemdVersion = systemdAnalyze ? Number(/systemd (\d+)/.exec(run(systemdAnalyze, ['--version']).stdout)?.[1] ?? 0) : 0;

/** A unit file as section -> key -> values (a key may repeat, e.g. SystemCallFilter=). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq < 0) throw new Error(`unexpected line in the unit: ${raw}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

const unitText = readFileSync(UNIT_FILE, 'utf8');
const unit = parseUnit(unitText);
const setting = (section: string, key: string): string | undefined => unit.get(section)?.get(key)?.at(-1);

/** The unit in a temp dir, its ExecStart pointing at a stand-in executable that exists here. */
function unitWithStandIn(edit: (text: string) => string = (t) => t): string {
  const dir = tempDir('unit');
  const standIn = join(dir, 'node');
  writeFileSync(standIn, '#!/bin/sh\nexit 0\n');
  chmodSync(standIn, 0o755);
  const text = unitText.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${standIn} `);
  expect(text, 'the stand-in replaced /usr/bin/node in ExecStart').toContain(`ExecStart=${standIn} /opt/outpost/`);
  const path = join(dir, 'outpost-agent.service');
  writeFileSync(path, edit(text));
  return path;
}

/**
 * Runs `systemd-analyze verify` and returns what it said about this unit. systemd logs every
 * problem (unknown key, bad value, bad section) as a warning and still exits 0, so the output
 * is the verdict. Lines that name another unit file (a distribution's unit pulled in as a
 * dependency) are not this unit's business.
 */
function verify(path: string): { status: number | null; complaints: string[]; output: string } {
  const args = ['verify', '--man=no', ...(systemdVersion >= 250 ? ['--recursive-errors=no'] : []), path];
  const r = run(systemdAnalyze!, args);
  const lines = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const complaints = lines.filter((l) => {
    const file = /^(\/[^:]+):\d+:/.exec(l)?.[1];
    return file === undefined || file === path;
  });
  return { status: r.status, complaints, output: show(r) };
}

describe('deploy/agent/outpost-agent.service', () => {
  it('runs the agent as outpost from /opt/outpost with /etc/outpost/agent.yaml, secrets from agent.env', () => {
    expect(setting('Service', 'ExecStart')).toBe(EXEC_START);
    expect(setting('Service', 'User')).toBe('outpost');
    expect(setting('Service', 'Group')).toBe('outpost');
    expect(setting('Service', 'EnvironmentFile')).toBe('-/etc/outpost/agent.env');
    // The config and the data live in the directories systemd manages for the unit.
    expect(setting('Service', 'ConfigurationDirectory')).toBe('outpost');
    expect(setting('Service', 'StateDirectory')).toBe('outpost');
    expect(setting('Install', 'WantedBy')).toBe('multi-user.target');
  });

  it('restarts forever and gives SIGTERM time to finish the transaction in flight', () => {
    expect(setting('Service', 'Restart')).toBe('always');
    expect(setting('Unit', 'StartLimitIntervalSec')).toBe('0');
    const seconds = (v: string | undefined): number => Number(/^(\d+)s?$/.exec(v ?? '')?.[1] ?? Number.NaN);
    expect(seconds(setting('Service', 'RestartSec'))).toBeGreaterThanOrEqual(1);
    expect(seconds(setting('Service', 'RestartSec'))).toBeLessThanOrEqual(60);
    expect(setting('Service', 'KillSignal')).toBe('SIGTERM');
    expect(seconds(setting('Service', 'TimeoutStopSec'))).toBeGreaterThanOrEqual(15);
  });

  it('is hardened, and leaves MemoryDenyWriteExecute off (V8 needs W+X memory)', () => {
    const expected: Record<string, string> = {
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectKernelLogs: 'yes',
      ProtectControlGroups: 'yes',
      RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX',
      RestrictNamespaces: 'yes',
      LockPersonality: 'yes',
      SystemCallArchitectures: 'native',
    };
    for (const [key, value] of Object.entries(expected)) expect(setting('Service', key), key).toBe(value);
    expect(['no', 'false', 'off', '0', undefined]).toContain(setting('Service', 'MemoryDenyWriteExecute'));
  });

  it.skipIf(!systemdAnalyze)(
    `systemd-analyze verify finds nothing wrong with it${needs(systemdAnalyze, 'systemd-analyze', 'systemd')}`,
    () => {
      const result = verify(unitWithStandIn());
      expect(result.complaints, result.output).toEqual([]);
      expect(result.status, result.output).toBe(0);
    },
  );

  // The control for the test above: systemd-analyze exits 0 on most mistakes, so make sure a
  // typo in a directive, a bad value and a missing executable do show up in what it says.
  it.skipIf(!systemdAnalyze)(
    `the verify check catches a typo, a bad value and a missing executable${needs(systemdAnalyze, 'systemd-analyze', 'systemd')}`,
    () => {
      const typo = verify(unitWithStandIn((t) => t.replace(/^NoNewPrivileges=yes$/m, 'NoNewPrivilege=yes')));
      expect(typo.complaints.join('\n'), typo.output).toContain('NoNewPrivilege');
      const badValue = verify(unitWithStandIn((t) => t.replace(/^ProtectSystem=strict$/m, 'ProtectSystem=strickt')));
      expect(badValue.complaints.join('\n'), badValue.output).toContain('strickt');
      const missing = verify(unitWithStandIn((t) => t.replace(/^ExecStart=\S+ /m, 'ExecStart=/nonexistent/outpost/node ')));
      expect(missing.complaints.join('\n'), missing.output).toContain('/nonexistent/outpost/node');
    },
  );

  const securityNote = !systemdAnalyze
    ? needs(systemdAnalyze, 'systemd-analyze', 'systemd')
    : systemdVersion < 250
      ? ` [SKIPPED: systemd ${systemdVersion} has no security --offline (250+)]`
      : '';
  it.skipIf(!systemdAnalyze || systemdVersion < 250)(`systemd-analyze security rates its exposure 2.0 or lower${securityNote}`, () => {
    // --threshold is in tenths: 20 is an exposure of 2.0 ("OK"); the unit scores 1.7 today.
    const r = run(systemdAnalyze!, ['security', '--offline=true', '--threshold=20', '--no-pager', unitWithStandIn()]);
    expect(r.status, show(r)).toBe(0);
  });
});

// --- deploy/agent/agent.yaml ---------------------------------------------------------------

const ALLOWED_KEYS = [
  'hub',
  'id',
  'data',
  'http',
  'collections',
  'syncCron',
  'syncWindowSeconds',
  'syncDisconnectOutside',
  'storageLimitMb',
  'reconnectMaxMs',
  'logLevel',
] as const;

function parseYaml(text: string): Record<string, unknown> {
  const doc = parseDocument(text);
  expect(doc.errors.map(String)).toEqual([]);
  expect(doc.warnings.map(String)).toEqual([]);
  const value: unknown = doc.toJS();
  expect(value).toBeTypeOf('object');
  expect(Array.isArray(value)).toBe(false);
  return value as Record<string, unknown>;
}

const positiveInteger = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) > 0;

/** Every key is one the CLI reads, and every value has the type that option takes. */
function checkConfig(config: Record<string, unknown>): void {
  expect(ALLOWED_KEYS).toEqual(expect.arrayContaining(Object.keys(config)));
  const checks: Record<(typeof ALLOWED_KEYS)[number], (v: unknown) => boolean> = {
    hub: (v) => typeof v === 'string' && /^mqtts?:\/\/[^\s/]+(:\d+)?$/.test(v) && URL.canParse(v),
    id: (v) => typeof v === 'string' && /^[A-Za-z0-9_.-]{1,128}$/.test(v),
    data: (v) => typeof v === 'string' && v.startsWith('/'),
    http: (v) => typeof v === 'string' && /^127\.0\.0\.1:\d{1,5}$/.test(v),
    collections: (v) => Array.isArray(v) && v.length > 0 && v.every((c) => typeof c === 'string' && /^[A-Za-z0-9_.-]+$/.test(c)),
    syncCron: (v) => typeof v === 'string' && isValidCron(v),
    syncWindowSeconds: positiveInteger,
    syncDisconnectOutside: (v) => typeof v === 'boolean',
    storageLimitMb: positiveInteger,
    reconnectMaxMs: positiveInteger,
    logLevel: (v) => typeof v === 'string' && ['trace', 'debug', 'info', 'warn', 'error', 'silent'].includes(v),
  };
  for (const [key, value] of Object.entries(config)) {
    expect(checks[key as (typeof ALLOWED_KEYS)[number]](value), `${key}: ${JSON.stringify(value)}`).toBe(true);
  }
}

describe('deploy/agent/agent.yaml', () => {
  const text = readFileSync(CONFIG_FILE, 'utf8');

  it('uses only the keys the CLI reads, each with a value of the right type', () => {
    const config = parseYaml(text);
    checkConfig(config);
    for (const key of ['hub', 'id', 'data', 'http', 'reconnectMaxMs', 'logLevel']) expect(config, key).toHaveProperty(key);
    // Where the unit lets the agent write, and where the README tells people to curl.
    expect(config.data).toBe(`/var/lib/${setting('Service', 'StateDirectory')}`);
    expect(config.http).toBe('127.0.0.1:7801');
    // And the CLI's own option table reads it without complaint.
    expect(resolveOptions(AGENT_OPTIONS, {}, {}, CONFIG_FILE)).toMatchObject({ hub: config.hub, id: config.id });
  });

  it('is realtime by default; its commented-out metered-link example is valid once uncommented', () => {
    const config = parseYaml(text);
    for (const key of ['syncCron', 'syncWindowSeconds', 'syncDisconnectOutside']) expect(config, key).not.toHaveProperty(key);
    // Uncomment the examples: "# key: value" lines for the optional keys and the list items under them.
    const optional = /^# ((collections|syncCron|syncWindowSeconds|syncDisconnectOutside):.*|\s+- .*)$/;
    const uncommented = text
      .split('\n')
      .map((line) => (optional.test(line) ? line.slice(2) : line))
      .join('\n');
    const metered = parseYaml(uncommented);
    checkConfig(metered);
    expect(metered).toMatchObject({ syncDisconnectOutside: true });
    expect(metered.syncCron).toBeTypeOf('string');
    expect(metered.syncWindowSeconds).toBeTypeOf('number');
    expect(metered.collections).toBeInstanceOf(Array);
  });
});

// --- deploy/agent/install.sh ---------------------------------------------------------------

/** Commands that change the machine. In a dry run none may be called; each stub records its call. */
const MUTATING = [
  'apt-get',
  'apt',
  'dpkg',
  'useradd',
  'groupadd',
  'usermod',
  'adduser',
  'systemctl',
  'npm',
  'install',
  'cp',
  'mv',
  'rm',
  'mkdir',
  'chown',
  'chmod',
  'ln',
  'tee',
  'sed',
  'mktemp',
  'touch',
  'curl',
  'wget',
];

/** Every file and directory under `dir`, with file contents: to show that nothing changed. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      const key = `${rel}${entry.name}`;
      if (entry.isDirectory()) {
        out[`${key}/`] = (statSync(path).mode & 0o7777).toString(8);
        walk(path, `${key}/`);
      } else {
        out[key] = `${(statSync(path).mode & 0o7777).toString(8)} ${readFileSync(path, 'utf8')}`;
      }
    }
  };
  walk(dir, '');
  return out;
}

/**
 * A built checkout in a temp dir (the script finds the app from its own location), an empty
 * OUTPOST_PREFIX, a stand-in node (OUTPOST_NODE) that only answers --version, and stubs for every
 * command that changes the machine, first on the PATH. The real install.sh runs against that.
 */
function sandbox(): { repo: string; prefix: string; log: string; installSh: (args: string[], env?: NodeJS.ProcessEnv) => Result } {
  const root = tempDir('install-sh');
  const repo = join(root, 'repo');
  const prefix = join(root, 'prefix');
  const bin = join(root, 'bin');
  const log = join(root, 'calls.log');
  for (const dir of [join(repo, 'deploy/agent'), join(repo, 'dist/cli'), prefix, bin]) mkdirSync(dir, { recursive: true });
  for (const file of ['install.sh', 'outpost-agent.service', 'agent.yaml'])
    copyFileSync(join(AGENT_DIR, file), join(repo, 'deploy/agent', file));
  const script = join(repo, 'deploy/agent/install.sh');
  chmodSync(script, 0o755);
  writeFileSync(join(repo, 'dist/cli/outpost.js'), '// built\n');
  writeFileSync(join(repo, 'package.json'), '{"name":"outpost","version":"0.0.0"}\n');
  writeFileSync(join(repo, 'package-lock.json'), '{"lockfileVersion":3}\n');
  writeFileSync(log, '');
  const stub = `#!/bin/sh\nprintf '%s\\n' "$0 $*" >> '${log}'\nexit 97\n`;
  for (const name of MUTATING) {
    writeFileSync(join(bin, name), stub);
    chmodSync(join(bin, name), 0o755);
  }
  // npm is looked for next to node first, so this is also the npm the script would run.
  writeFileSync(
    join(bin, 'node'),
    `#!/bin/sh\nif [ "$1" = --version ]; then echo "v\${FAKE_NODE_VERSION:-20.19.0}"; exit 0; fi\n${stub.split('\n').slice(1).join('\n')}`,
  );
  chmodSync(join(bin, 'node'), 0o755);
  const installSh = (args: string[], env: NodeJS.ProcessEnv = {}): Result =>
    run('bash', [script, ...args], {
      cwd: root,
      env: {
        ...process.env,
        PATH: `${bin}${delimiter}${process.env.PATH ?? ''}`,
        OUTPOST_PREFIX: prefix,
        OUTPOST_NODE: join(bin, 'node'),
        ...env,
      },
    });
  return { repo, prefix, log, installSh };
}

describe('deploy/agent/install.sh', () => {
  it('is valid bash (bash -n)', () => {
    const r = run('bash', ['-n', INSTALL_SH]);
    expect(r.status, show(r)).toBe(0);
  });

  it('is executable', () => {
    expect(statSync(INSTALL_SH).mode & 0o111).not.toBe(0);
  });

  it.skipIf(!shellcheck)(`passes shellcheck${needs(shellcheck, 'shellcheck', 'shellcheck')}`, () => {
    const r = run(shellcheck!, ['--shell=bash', '--severity=style', INSTALL_SH]);
    expect(r.status, show(r)).toBe(0);
  });

  describe.skipIf(process.platform !== 'linux')('--dry-run (against stubs and an empty prefix: nothing may change)', () => {
    it('plans a first install: user, app with npm ci --omit=dev, unit, config, enable --now', () => {
      const box = sandbox();
      const repoBefore = snapshot(box.repo);
      const r = box.installSh(['--dry-run', '--hub', 'mqtt://hub.example.net:1883', '--id', 'pi-7']);
      expect(r.status, show(r)).toBe(0);
      expect(readFileSync(box.log, 'utf8'), 'commands that change the machine were called').toBe('');
      expect(snapshot(box.prefix), 'files appeared under OUTPOST_PREFIX').toEqual({});
      expect(snapshot(box.repo)).toEqual(repoBefore);

      const p = box.prefix;
      expect(r.stdout).toMatch(/would run: useradd --system .*--shell \/usr\/sbin\/nologin .*outpost$|user outpost exists/m);
      expect(r.stdout).toContain(`would run: install -d -m 0755 ${p}/opt/outpost.new`);
      expect(r.stdout).toMatch(
        new RegExp(`would run: env PATH=\\S+ \\S+/npm ci --prefix ${p}/opt/outpost.new --omit=dev --ignore-scripts`),
      );
      expect(r.stdout).toContain(`would run: mv ${p}/opt/outpost.new ${p}/opt/outpost`);
      expect(r.stdout).toContain(`${p}/etc/systemd/system/outpost-agent.service`);
      expect(r.stdout).toContain(
        `would write: ${p}/etc/outpost/agent.yaml from deploy/agent/agent.yaml with hub: "mqtt://hub.example.net:1883" and id: "pi-7"`,
      );
      expect(r.stdout).toContain('would run: systemctl daemon-reload');
      expect(r.stdout).toContain('would run: systemctl enable --now outpost-agent');
      for (const hint of ['systemctl status outpost-agent', 'journalctl -u outpost-agent -f', 'curl http://127.0.0.1:7801/v1/status']) {
        expect(r.stdout).toContain(hint);
      }
    });

    it('plans an upgrade that keeps an existing configuration as it is', () => {
      const box = sandbox();
      const confDir = join(box.prefix, 'etc/outpost');
      mkdirSync(confDir, { recursive: true });
      writeFileSync(join(confDir, 'agent.yaml'), 'hub: mqtt://edited:1883\nid: edited\n');
      writeFileSync(join(confDir, 'agent.env'), 'OUTPOST_TOKEN=secret\n');
      const before = snapshot(box.prefix);
      const r = box.installSh(['--dry-run']);
      expect(r.status, show(r)).toBe(0);
      expect(r.stdout).toContain(`keeping ${confDir}/agent.yaml`);
      expect(r.stdout).toContain(`keeping ${confDir}/agent.env`);
      expect(r.stdout).not.toMatch(/would write: .*agent\.(yaml|env)/);
      expect(snapshot(box.prefix)).toEqual(before);
      expect(readFileSync(box.log, 'utf8')).toBe('');
    });

    it('refuses, before doing anything, what it cannot do right', () => {
      const box = sandbox();
      const refusals: [string[], NodeJS.ProcessEnv, RegExp][] = [
        // A first install needs a real hub and a unique id, not the example's placeholders.
        [['--dry-run'], {}, /pass --hub URL and --id AGENT_ID/],
        [['--dry-run', '--hub', 'mqtt://hub:1883', '--id', 'bad id'], {}, /--id: expected/],
        [['--dry-run', '--hub', 'http://hub:1883', '--id', 'pi-1'], {}, /--hub: expected/],
        [['--dry-run', '--bogus'], {}, /unknown argument: --bogus/],
        // A prefix other than / is for dry runs only; this would otherwise be a real install.
        [['--hub', 'mqtt://hub:1883', '--id', 'pi-1'], {}, /only for --dry-run/],
        [['--dry-run', '--hub', 'mqtt://hub:1883', '--id', 'pi-1'], { FAKE_NODE_VERSION: '20.18.3' }, /missing or older than 20\.19/],
        [
          ['--dry-run', '--hub', 'mqtt://hub:1883', '--id', 'pi-1'],
          { OUTPOST_NODE: '/home/pi/.nvm/versions/node/v20.19.0/bin/node' },
          /cannot see home directories/,
        ],
      ];
      for (const [args, env, message] of refusals) {
        const r = box.installSh(args, env);
        expect(r.status, `${args.join(' ')}\n${show(r)}`).toBe(1);
        expect(r.stderr, args.join(' ')).toMatch(message);
      }
      expect(readFileSync(box.log, 'utf8')).toBe('');
      expect(snapshot(box.prefix)).toEqual({});
    });

    it('says to build first when dist/ is missing', () => {
      const box = sandbox();
      renameSync(join(box.repo, 'dist'), join(box.repo, 'dist.moved'));
      const missing = box.installSh(['--dry-run', '--hub', 'mqtt://hub:1883', '--id', 'pi-1']);
      expect(missing.status, show(missing)).toBe(1);
      expect(missing.stderr).toMatch(/dist\/cli\/outpost\.js is missing: run this script from a built checkout/);
    });
  });
});
