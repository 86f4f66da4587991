import { existsSync } from 'node:fs';
import { MOSQUITTO, NO_MOSQUITTO } from './mosquitto.js';
import { NO_C_COMPILER, powerLossShim } from './power-loss.js';
import { postgresUnavailable } from './postgres-server.js';
import { which } from './which.js';

/**
 * Vitest global setup. On a laptop, tests that need a service the machine lacks skip, saying
 * why. In CI (`CI` set) a missing service fails the run before any test starts: a green run
 * must not hide a suite that never ran. `.ci/run` installs and starts all of these.
 */
export default async function requireServicesInCi(): Promise<void> {
  if (!process.env.CI) return;
  const chromium = process.env.OUTPOST_CHROMIUM ?? '/usr/bin/chromium';
  const missing = [
    await postgresUnavailable(),
    MOSQUITTO ? undefined : NO_MOSQUITTO,
    existsSync(chromium) ? undefined : `Chromium is not at ${chromium} (apt-get install chromium): the dashboard test would skip`,
    which('shellcheck') ? undefined : 'shellcheck is not installed: the install script check would skip',
    which('systemd-analyze') ? undefined : 'systemd-analyze is not installed (package systemd): the unit checks would skip',
    powerLossShim() ? undefined : NO_C_COMPILER,
  ].filter((why): why is string => why !== undefined);
  if (missing.length > 0) throw new Error(`CI is set but services the tests need are missing:\n- ${missing.join('\n- ')}`);
}
