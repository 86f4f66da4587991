import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';
import { which } from './which.js';

/** The Mosquitto binary, or undefined: the external-broker tests then skip, saying why. */
// Debian installs it in /usr/sbin, which is not on every user's PATH.
export const MOSQUITTO = which('mosquitto') ?? (existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : undefined);
export const NO_MOSQUITTO = 'mosquitto is not installed (apt-get install mosquitto): the tests against a real Mosquitto are skipped';

/**
 * A real Mosquitto on an ephemeral loopback port, configured with the snippet `outpost hub export
 * mosquitto` wrote (its listener replaced), logging to stderr so that a reload can be awaited.
 */
export class MosquittoProcess {
  #output = '';

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    child.stdout!.on('data', (chunk: Buffer) => (this.#output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.#output += chunk.toString()));
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get output(): string {
    return this.#output;
  }

  /** Starts Mosquitto with `<exportDir>/mosquitto.conf`, listening on 127.0.0.1 only. */
  static async start(exportDir: string, port?: number): Promise<MosquittoProcess> {
    if (!MOSQUITTO) throw new Error(NO_MOSQUITTO);
    const listen = port ?? (await freePort());
    const exported = readFileSync(join(exportDir, 'mosquitto.conf'), 'utf8')
      .split('\n')
      .filter((l) => !l.startsWith('listener '));
    const conf = join(exportDir, 'test-mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${listen} 127.0.0.1`,
        ...exported,
        'log_dest stderr', // unbuffered through a pipe (stdout is block-buffered)
        'log_type all',
        // As root Mosquitto drops to the `mosquitto` user, which cannot read a temp dir's files.
        ...(process.getuid?.() === 0 ? ['user root'] : []),
        '',
      ].join('\n'),
    );
    const child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    const broker = new MosquittoProcess(child, listen);
    await waitFor(
      `mosquitto running on port ${listen}`,
      () => {
        if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}:\n${broker.output}`);
        return broker.output.includes('running');
      },
      10_000,
    );
    return broker;
  }

  /** SIGHUP: Mosquitto rereads its password and ACL files, and drops clients no longer valid. */
  async reload(): Promise<void> {
    const count = (): number => this.#output.split('Reloading config').length;
    const before = count();
    this.child.kill('SIGHUP');
    await waitFor('mosquitto reloaded', () => count() > before, 5_000);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
  }
}
