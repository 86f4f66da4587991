// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Layers one way: shared at the bottom, content on it, agent and hub beside each other, cli on top. */
const layer = (files, forbidden, why) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', { patterns: forbidden.map((group) => ({ group: [group], message: why })) }],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'test/artifacts/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      // Handlers and API methods stay async so they can await later without changing their type.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      'no-restricted-syntax': ['error', { selector: 'TSEnumDeclaration', message: 'use a string-literal union or an as-const object' }],
    },
  },
  layer(['agent/**/*.ts'], ['**/hub/**', '**/cli/**'], 'agent/ must not import hub/ or cli/: the two sides share only shared/'),
  layer(['hub/**/*.ts'], ['**/agent/**', '**/cli/**'], 'hub/ must not import agent/ or cli/: the two sides share only shared/'),
  layer(
    ['shared/**/*.ts'],
    ['**/agent/**', '**/hub/**', '**/cli/**', 'node:net', 'node:fs', 'node:http', 'mqtt', 'aedes', 'better-sqlite3'],
    'shared/ is pure code: protocol, codec, clock, errors; no sockets, no files, no upper layer',
  ),
  layer(
    ['content/**/*.ts'],
    ['**/agent/**', '**/hub/**', '**/cli/**', 'node:net', 'node:http', 'mqtt', 'aedes', 'better-sqlite3'],
    'content/ is blob content in files, for agent and hub alike: it uses shared/ and the file system only',
  ),
  // Error codes are written once, in shared/errors.ts; everything else names them as ErrorCode.X.
  {
    files: ['agent/**/*.ts', 'hub/**/*.ts', 'shared/**/*.ts', 'content/**/*.ts', 'cli/**/*.ts'],
    ignores: ['shared/errors.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: 'TSEnumDeclaration', message: 'use a string-literal union or an as-const object' },
        { selector: 'Literal[value=/^OUTPOST_[A-Z_]+$/]', message: 'error codes live in shared/errors.ts: use ErrorCode.X' },
      ],
    },
  },
  // One job per file: a source file past 400 lines is doing more than one (blank lines and comments count).
  {
    files: ['agent/**/*.ts', 'hub/**/*.ts', 'shared/**/*.ts', 'content/**/*.ts', 'cli/**/*.ts'],
    rules: { 'max-lines': ['error', { max: 400 }] },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  // Tool configuration that its tool loads as CommonJS.
  { files: ['**/*.cjs'], languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } } },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
