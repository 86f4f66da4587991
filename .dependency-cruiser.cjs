/**
 * Import rules checked by `npm run lint` (`depcruise`). Type-only imports count: a cycle through
 * types still means two modules that cannot be read or changed apart. The layering rules
 * (agent/ and hub/ never import each other, shared/ imports neither) live in eslint.config.js.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycle among source files: break it with a narrow interface the lower module owns.',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules|test|bench)/' },
  },
};
