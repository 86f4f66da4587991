/** Reading a hub's SQLite database from the benchmark process while the hub writes it. */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';

/** Polls the hub's database until `target` changes are committed. */
export async function committedHead(path: string, target: number): Promise<number> {
  while (!existsSync(path)) await new Promise((resolve) => setTimeout(resolve, 2));
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    for (;;) {
      // Until the hub has run its migrations there is no log table yet.
      const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'log'").get() !== undefined;
      const head = exists ? ((db.prepare('SELECT max(lsn) AS lsn FROM log').get() as { lsn: number | null }).lsn ?? 0) : 0;
      if (head >= target) return head;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  } finally {
    db.close();
  }
}
