import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { cutPower, markDurable, NO_C_COMPILER, powerLossEnv, powerLossShim } from '../helpers/power-loss.js';
import { tempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Rows a clean run wrote before the writer starts: what every cut must keep. */
const BASELINE = 10;

/**
 * The writer: one row per transaction, each id printed once its commit returned. Row `fullAt`
 * commits with synchronous=FULL, the others with the mode given. Stops after `rows` rows and
 * waits to be killed.
 */
const WRITER = `
const Database = require('better-sqlite3');
const { path, synchronous, first, rows, fullAt, checkpointEvery } = JSON.parse(process.argv[1]);
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma('wal_autocheckpoint = ' + checkpointEvery);
const insert = db.prepare('INSERT INTO rows (id) VALUES (?)');
for (let id = first; id < first + rows; id++) {
  db.pragma('synchronous = ' + (id === fullAt ? 'FULL' : synchronous));
  insert.run(id);
  process.stdout.write('committed ' + id + '\\n');
}
process.stdout.write('done\\n');
setInterval(() => undefined, 60_000);
`;

interface Writer {
  child: ChildProcess;
  /** Ids whose commit had returned, as printed. */
  committed: number[];
  /** Whether it wrote all its rows; throws, with its output, if it died on its own. */
  done: () => boolean;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

/** A database in a fresh directory holding the baseline rows, closed cleanly and marked durable. */
function baselineDir(): { dir: string; path: string } {
  const dir = tempDir('power-loss');
  const path = join(dir, 'test.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY)');
  const insert = db.prepare('INSERT INTO rows (id) VALUES (?)');
  for (let id = 1; id <= BASELINE; id++) insert.run(id);
  db.close();
  markDurable(dir);
  return { dir, path };
}

function startWriter(
  dir: string,
  path: string,
  options: { synchronous: string; rows: number; fullAt?: number; checkpointEvery?: number },
): Writer {
  const settings = { path, first: BASELINE + 1, fullAt: 0, checkpointEvery: 1000, ...options };
  const child = spawn(process.execPath, ['-e', WRITER, JSON.stringify(settings)], {
    cwd: REPO, // where require('better-sqlite3') resolves
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...powerLossEnv(dir) },
  });
  children.push(child);
  let output = '';
  let exit: string | undefined;
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.once('exit', (code, signal) => (exit = String(code ?? signal)));
  const writer: Writer = {
    child,
    committed: [],
    done: () => {
      if (exit !== undefined) throw new Error(`the writer exited with ${exit}:\n${output}`);
      return output.includes('done\n');
    },
  };
  child.stdout.on('data', () => {
    writer.committed = [...output.matchAll(/^committed (\d+)$/gm)].map((m) => Number(m[1]));
  });
  return writer;
}

/** The ids the database holds, opened as the next process after the cut would. */
function idsIn(path: string): number[] {
  const db = new Database(path);
  try {
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    return db
      .prepare('SELECT id FROM rows ORDER BY id')
      .pluck()
      .all()
      .map((id) => Number(id));
  } finally {
    db.close();
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

const shim = powerLossShim();

// Skipped where there is no compiler, except in CI: there each test fails, saying what is missing.
describe.skipIf(!shim && !process.env.CI)(`a power cut keeps what was fsynced, and only that${shim ? '' : ` (${NO_C_COMPILER})`}`, () => {
  it('synchronous=FULL: every commit that returned survives, checkpoints and WAL restarts included', async () => {
    const { dir, path } = baselineDir();
    // A checkpoint every 20 pages: the database file and a restarted WAL are fsynced along the way too.
    const writer = startWriter(dir, path, { synchronous: 'FULL', rows: 100_000, checkpointEvery: 20 });
    await waitFor('200 commits of the writer', () => writer.done() || writer.committed.length >= 200, 10_000);
    await cutPower(writer.child, dir);

    const ids = idsIn(path);
    expect(ids).toEqual(range(1, ids.length)); // a prefix of the commits, never a hole
    expect(ids.length).toBeGreaterThanOrEqual(BASELINE + writer.committed.length);
  });

  it('synchronous=OFF: rows never fsynced are gone after the cut, even those a checkpoint copied', async () => {
    const { dir, path } = baselineDir();
    const writer = startWriter(dir, path, { synchronous: 'OFF', rows: 300, checkpointEvery: 20 });
    await waitFor('the writer done', writer.done, 10_000);
    await cutPower(writer.child, dir);

    expect(idsIn(path)).toEqual(range(1, BASELINE));
  });

  it('synchronous=OFF, killed without the harness: the page cache keeps every row', async () => {
    const { dir, path } = baselineDir();
    const writer = startWriter(dir, path, { synchronous: 'OFF', rows: 300, checkpointEvery: 20 });
    await waitFor('the writer done', writer.done, 10_000);
    writer.child.kill('SIGKILL');
    await new Promise((resolve) => writer.child.once('exit', resolve));

    expect(idsIn(path)).toEqual(range(1, BASELINE + 300));
  });

  it('synchronous=NORMAL: one FULL commit makes every commit before it durable, and none after it', async () => {
    const { dir, path } = baselineDir();
    // No checkpoint within 300 rows (it comes at 1000 pages): NORMAL commits never fsync their frames (only a new WAL's header).
    const fullAt = BASELINE + 250;
    const writer = startWriter(dir, path, { synchronous: 'NORMAL', rows: 300, fullAt });
    await waitFor('the writer done', writer.done, 10_000);
    await cutPower(writer.child, dir);

    expect(idsIn(path)).toEqual(range(1, fullAt));
  });
});
