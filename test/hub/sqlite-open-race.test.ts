import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/temp.js';

const SQLITE_DB = fileURLToPath(new URL('../../dist/hub/store/sqlite-db.js', import.meta.url));

/** Opens (creates, migrates) the hub database in `dir` from a process of its own; resolves with what it printed. */
function openInProcess(dir: string): Promise<string> {
  const script = `import { SqliteHubDb } from ${JSON.stringify(SQLITE_DB)};
try { new SqliteHubDb(process.argv[1]).close(); console.log('opened'); } catch (e) { console.log('failed: ' + e.message); }`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => child.once('exit', () => resolve(output.trim())));
}

describe('SQLite hub store opened by several processes at once', () => {
  // The hubs of several partitions on one machine open the default partition's database (the
  // agent registry) together, often at their first start, when it does not exist yet.
  it('creates and migrates a new database once, whoever opens it first; none fails', async () => {
    for (let round = 0; round < 8; round++) {
      const dir = tempDir('sqlite-race');
      const outputs = await Promise.all([openInProcess(dir), openInProcess(dir), openInProcess(dir)]);
      expect(outputs, `round ${round}`).toEqual(['opened', 'opened', 'opened']);
    }
  }, 60_000);
});
