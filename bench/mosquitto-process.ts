import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { MOSQUITTO } from '../test/helpers/mosquitto.js';
import { killOnExit } from './children.js';

/**
 * Mosquitto with the configuration `lines`, written to `confFile`; resolves once it runs. As root
 * Mosquitto drops to the `mosquitto` user, which cannot read a temp dir's files: it stays root.
 */
export async function runMosquitto(confFile: string, lines: readonly string[]): Promise<ChildProcess> {
  if (!MOSQUITTO) throw new Error('mosquitto is not installed');
  const root = process.getuid?.() === 0 ? ['user root'] : [];
  writeFileSync(confFile, [...lines, ...root, ''].join('\n'));
  const child = killOnExit(spawn(MOSQUITTO, ['-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes('running')) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`mosquitto exited with ${code}:\n${output}`)));
  });
  return child;
}
