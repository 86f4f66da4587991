import { execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { which } from './which.js';

/**
 * A power cut for a real child process, SQLite's files included. SIGKILL alone is not one: the
 * kernel's page cache keeps every write the process made, fsynced or not. Here the child runs
 * with a preloaded shim (power-loss/durable-files.c) that, after each fsync or fdatasync of a
 * file directly in the watched directory, keeps a copy of the whole file in `<dir>/.durable/`.
 * `cutPower` kills the child and puts those copies in place of the files.
 *
 * The model: a power cut keeps exactly what each file held at its last fsync. That is the worst
 * case; a real disk may keep more of the later writes, in any order, and SQLite copes with that
 * too (the WAL's frames carry checksums, so recovery stops at a torn or stale tail).
 * - `-shm` files go: the WAL index is shared memory that SQLite never fsyncs and rebuilds from
 *   the WAL when the first connection opens the database.
 * - A file never fsynced since the baseline (`markDurable`) goes: it never reached the disk.
 * - Directory operations are not modelled: a file is kept under the name it had when it was
 *   fsynced, and a file removed or renamed stays so. SQLite needs no more (it renames nothing,
 *   and a WAL it deleted was checkpointed first); a writer that renames a temp file into place
 *   would need more than this.
 */

const SOURCE = fileURLToPath(new URL('./power-loss/durable-files.c', import.meta.url));

export const NO_C_COMPILER =
  'no C compiler (cc, gcc or clang) is installed: the power-cut tests, which preload a shim compiled from C, are skipped';

/** undefined: not looked for yet; null: there is no compiler. */
let shim: string | null | undefined;

/**
 * The compiled shim, or undefined where there is no C compiler (tests then skip, saying
 * NO_C_COMPILER). Built once per source text into the OS temp dir, where test workers share it.
 */
export function powerLossShim(): string | undefined {
  if (shim === undefined) shim = build() ?? null;
  return shim ?? undefined;
}

function build(): string | undefined {
  const cc = which('cc') ?? which('gcc') ?? which('clang');
  if (!cc) return undefined;
  const source = readFileSync(SOURCE);
  const dir = join(tmpdir(), 'outpost-power-loss', createHash('sha256').update(source).digest('hex').slice(0, 16));
  const so = join(dir, 'durable-files.so');
  if (existsSync(so)) return so;
  mkdirSync(dir, { recursive: true });
  // Built under a name of this process's and renamed: a worker building at the same time never sees half a library.
  const building = `${so}.${process.pid}`;
  execFileSync(cc, ['-shared', '-fPIC', '-O2', '-Wall', '-o', building, SOURCE, '-ldl', '-lpthread'], { stdio: 'pipe' });
  renameSync(building, so);
  return so;
}

/** What a child's environment needs for `cutPower` to work on `dir`: the shim preloaded, watching `dir`. */
export function powerLossEnv(dir: string): Record<string, string> {
  const so = powerLossShim();
  if (!so) throw new Error(NO_C_COMPILER);
  // The shim resolves the directory once, when the child starts: one made later would go unwatched.
  if (!existsSync(dir)) throw new Error(`${dir} must exist before the child starts`);
  const preload = process.env.LD_PRELOAD ? `${so}:${process.env.LD_PRELOAD}` : so;
  return { LD_PRELOAD: preload, OUTPOST_POWER_LOSS_DIR: dir };
}

const shadowsOf = (dir: string): string => join(dir, '.durable');

/** The regular files directly in `dir`: the ones a power cut acts on. */
const filesIn = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => entry.name);

const isShm = (name: string): boolean => name.endsWith('-shm');

/**
 * Takes the files in `dir` as they are now as durable: the baseline, after a process that wrote
 * them closed cleanly (or before one starts). Shadows of files no longer there are forgotten,
 * so that a WAL deleted at a clean close cannot come back at the next cut.
 */
export function markDurable(dir: string): void {
  const shadows = shadowsOf(dir);
  mkdirSync(shadows, { recursive: true });
  const files = filesIn(dir).filter((name) => !isShm(name));
  for (const name of files) copyFileSync(join(dir, name), join(shadows, name));
  for (const name of filesIn(shadows)) if (!files.includes(name)) unlinkSync(join(shadows, name));
}

/**
 * Cuts the power of `child`, whose files are in `dir`: kills it, then leaves each file as it
 * was at its last fsync (see the model above). `.durable/` stays, so that the next process
 * on `dir` goes on from this state.
 */
export async function cutPower(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
  const shadows = shadowsOf(dir);
  for (const name of filesIn(dir)) {
    const file = join(dir, name);
    const shadow = join(shadows, name);
    if (!isShm(name) && existsSync(shadow) && statSync(shadow).isFile()) copyFileSync(shadow, file);
    else rmSync(file);
  }
}
