/**
 * Bundles the `outpost` command into dist/cli/outpost.js, over the file tsc wrote there (the
 * rest of dist/ stays tsc's: the library entry and its type declarations). A device keeps the
 * agent running for months on a few hundred MB: one minified file per group of modules, with the
 * code no path uses left out, holds less in the V8 heap than hundreds of separate module sources.
 * The subcommands the CLI imports on demand (the hub, the demo, admin commands) become chunks of
 * their own under dist/cli/chunks/, so `outpost agent` never loads them.
 */
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';

// Paths are from the repository root, where npm runs the build.
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));

/**
 * Dependencies compiled into the bundle: the pure-JavaScript packages an agent loads. Every other
 * dependency is loaded from node_modules as before: native modules (better-sqlite3), packages
 * that load their own files by path (node-cron's background daemon, prom-client's optional
 * peers, pg's native binding), and those only the hub uses.
 */
const BUNDLED = new Set(['@sinclair/typebox', 'cbor-x', 'commander', 'mqtt', 'pino', 'secure-json-parse', 'yaml']);

// Chunk names carry a content hash: those of an earlier build would pile up.
rmSync('dist/cli/chunks', { recursive: true, force: true });
await build({
  entryPoints: ['cli/outpost.ts'],
  outdir: 'dist/cli',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.19',
  // Minified sources are what V8 keeps in memory for every loaded function (about 3 MB less).
  minify: true,
  sourcemap: 'linked',
  sourcesContent: false,
  external: Object.keys(pkg.dependencies).filter((name) => !BUNDLED.has(name)),
  // The bundled CommonJS packages (MQTT.js, pino) call require() for Node's own modules, which an
  // ES module does not have.
  banner: { js: "import { createRequire as __outpostRequire } from 'node:module'; const require = __outpostRequire(import.meta.url);" },
  logLevel: 'warning',
});
