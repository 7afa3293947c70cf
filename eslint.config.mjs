import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'coverage/**',
      '.sample-dist/**',
      '**/*.mjs',
      '.package-check.*/**',
      'test/compat/**',
      'test/docs/.generated/**',
      'test/kit/vitest/.generated/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-control-regex': 'off',
    },
  },
  {
    // Plain CommonJS scripts (benchmarks, Jest config) run by Node as they are.
    files: ['**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: Object.fromEntries(
        [
          'require',
          'module',
          'exports',
          '__dirname',
          '__filename',
          'process',
          'console',
          'Buffer',
          'setTimeout',
          'clearTimeout',
          'setInterval',
          'clearInterval',
          'setImmediate',
          'fetch',
          'URL',
          'AbortController',
          'performance',
        ].map((name) => [name, 'readonly']),
      ),
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  // The test kit runs under any test runner: it takes the runner's functions, never its globals.
  {
    files: ['lib/testing/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        ...['describe', 'it', 'test', 'expect', 'beforeAll', 'beforeEach', 'afterAll', 'afterEach', 'jest', 'vi'].map(
          (name) => ({ name, message: 'the test kit takes the runner’s functions as arguments' }),
        ),
      ],
    },
  },
  // Layers point one way: core <- stores, observability, testing <- the Nest layer.
  {
    files: ['lib/core/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@nestjs/*'], message: 'the core stays framework-free' },
            { group: ['../*'], message: 'the core imports nothing above it (stores, http, observability, the module)' },
          ],
        },
      ],
    },
  },
  {
    files: ['lib/stores/**/*.ts', 'lib/observability/**/*.ts', 'lib/testing/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@nestjs/*'], message: 'stores, observability and the test kit stay framework-free' },
            {
              group: ['jest', '@jest/*', 'vitest', 'node:test', 'mocha'],
              message: 'the test kit works under any test runner: take its functions as arguments',
            },
            {
              group: [
                '../http/*',
                '../rpc/*',
                '../graphql/*',
                '../calls/*',
                '../binding/*',
                '../service/*',
                '../idempotency.*',
                '../interfaces/*',
                '../health/*',
                '../swagger/*',
              ],
              message: 'stores, observability and the test kit import only the core (and observability)',
            },
          ],
        },
      ],
    },
  },
  // The layer every entry point shares (the runner, problems, option resolution, the claim
  // parameter, the call token): nothing of a transport, the dispatcher or the module's wiring.
  {
    files: ['lib/calls/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../http/*', '../rpc/*', '../graphql/*', '../service/*', '../binding/*'],
              message: 'the shared layer imports no transport and not the dispatcher',
            },
            {
              group: ['../idempotency.module', '../idempotency.providers', '../health/*', '../swagger/*'],
              message: "the shared layer imports nothing of the module's wiring",
            },
          ],
        },
      ],
    },
  },
  // Transports are siblings: each adapts one kind of call to the shared layer, and none imports
  // another, the dispatcher or the module's wiring.
  ...[
    ['http', ['rpc', 'graphql', 'service']],
    ['rpc', ['http', 'graphql', 'service']],
    ['graphql', ['http', 'rpc', 'service']],
    ['service', ['http', 'rpc', 'graphql']],
  ].map(([transport, siblings]) => ({
    files: [`lib/${transport}/**/*.ts`],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: siblings.map((sibling) => `../${sibling}/*`),
              message: `transports are siblings: ${transport}/ imports no other transport (share through calls/)`,
            },
            { group: ['../binding/*'], message: `${transport}/ does not import the dispatcher` },
            {
              group: ['../idempotency.module', '../idempotency.providers'],
              message: `${transport}/ imports nothing of the module's wiring`,
            },
          ],
        },
      ],
    },
  })),
);
