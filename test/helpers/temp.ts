import { mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the OS temp dir, removed after the test file. */
export function tempDir(label = 'outpost'): string {
  const dir = mkdtempSync(join(tmpdir(), `${label}-`));
  made.push(dir);
  return dir;
}

/** Sets the modification time of `dir` and every directory under it to `ms` ago (content "untouched" that long). */
export function ageTree(dir: string, ms: number): void {
  const then = new Date(Date.now() - ms);
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) ageTree(join(dir, entry.name), ms);
  utimesSync(dir, then, then);
}
