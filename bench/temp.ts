import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.on('exit', () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A temp directory removed when the benchmark process exits. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `outpost-${label}-`));
  made.push(dir);
  return dir;
}
