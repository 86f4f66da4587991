import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../../cli/options.js';
import { AGENT_OPTIONS } from '../../cli/tables.js';
import { SOFTWARE_VERSION } from '../../shared/protocol-version.js';
import { CLI, runOutpost } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp.js';

describe('configuration: one table, three sources', () => {
  const file = (text: string): string => {
    const path = join(tempDir('config'), 'agent.yaml');
    writeFileSync(path, text);
    return path;
  };

  it('takes a flag over the environment over the file over the default', () => {
    const path = file('hub: mqtt://file:1883\nid: from-file\nsyncWindowSeconds: 60\ncollections: [a, b]\n');
    const o = resolveOptions(AGENT_OPTIONS, { id: 'from-flag' }, { OUTPOST_HUB: 'mqtt://env:1883' }, path);
    expect(o).toMatchObject({
      id: 'from-flag',
      hub: 'mqtt://env:1883',
      syncWindowSeconds: 60,
      collections: ['a', 'b'],
      http: { host: '127.0.0.1', port: 7801 },
      reconnectMaxMs: 30_000,
      syncDisconnectOutside: false,
    });
    expect(resolveOptions(AGENT_OPTIONS, {}, { OUTPOST_COLLECTIONS: 'x, y', OUTPOST_SYNC_DISCONNECT_OUTSIDE: 'true' }, path)).toMatchObject(
      { collections: ['x', 'y'], syncDisconnectOutside: true },
    );
  });

  it('fails at start on unknown or invalid options, naming the option and its source', () => {
    expect(() => resolveOptions(AGENT_OPTIONS, {}, {}, file('hub: x\nid: y\nsyncWindowSecond: 5\n'))).toThrow(
      /unknown option syncWindowSecond in .*agent\.yaml/,
    );
    expect(() => resolveOptions(AGENT_OPTIONS, {}, { OUTPOST_RECONNECT_MAX_MS: 'soon' }, file('hub: x\nid: y\n'))).toThrow(
      /environment variable OUTPOST_RECONNECT_MAX_MS: expected a whole number, got "soon"/,
    );
    expect(() => resolveOptions(AGENT_OPTIONS, { http: 'nowhere' }, {}, file('hub: x\nid: y\n'))).toThrow(
      /option --http: expected host:port/,
    );
    expect(() => resolveOptions(AGENT_OPTIONS, {}, {}, file('hub: x\nid: "two words"\n'))).toThrow(/id in .*: expected 1-128 letters/);
    expect(() => resolveOptions(AGENT_OPTIONS, {}, {}, file('id: y\n'))).toThrow(
      /missing required option --hub \(or OUTPOST_HUB, or hub in the config file\)/,
    );
    expect(() => resolveOptions(AGENT_OPTIONS, { logLevel: 'loud' }, {}, file('hub: x\nid: y\n'))).toThrow(
      /option --log-level: expected one of trace, debug/,
    );
  });

  it('the process refuses a bad option at start, with the same message', () => {
    let stderr = '';
    try {
      execFileSync(process.execPath, [CLI, 'agent', '--hub', 'mqtt://127.0.0.1:1', '--id', 'pi', '--sync-window-seconds', 'x'], {
        stdio: 'pipe',
      });
    } catch (error) {
      stderr = String((error as { stderr: Buffer }).stderr);
    }
    expect(stderr).toMatch(/configuration error: option --sync-window-seconds: expected a whole number/);
  });

  it('a hub refuses an object store for blob content without a PostgreSQL store, or one that is not an S3 bucket URL', () => {
    const data = tempDir('hub-config');
    const sqlite = runOutpost(['hub', '--data', data, '--port', '0', '--blob-store', 's3://fleet-content/outpost']);
    expect(sqlite.status).not.toBe(0);
    expect(sqlite.stderr).toMatch(/option --blob-store needs a PostgreSQL --store: a SQLite hub keeps blob content in files under --data/);
    const notS3 = runOutpost(['hub', '--data', data, '--store', 'postgres://127.0.0.1:1/x', '--blob-store', 'https://fleet-content']);
    expect(notS3.status).not.toBe(0);
    expect(notS3.stderr).toMatch(/option --blob-store: expected an S3 bucket URL, s3:\/\/bucket or s3:\/\/bucket\/prefix/);
  });

  it('reports the version package.json declares', () => {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
    expect(SOFTWARE_VERSION).toBe(pkg.version);
  });

  it('docs/CONFIGURATION.md is the reference generated from the tables (npm run docs:config)', () => {
    const generated = execFileSync(process.execPath, [CLI, 'config-reference'], { encoding: 'utf8' });
    const committed = readFileSync(fileURLToPath(new URL('../../docs/CONFIGURATION.md', import.meta.url)), 'utf8');
    expect(committed).toBe(generated);
    for (const spec of AGENT_OPTIONS.filter((s) => !s.hidden)) expect(generated).toContain(`\`${spec.key}\``);
  });
});
