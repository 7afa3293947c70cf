/** @type {import('jest').Config} */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/lib/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts', '<rootDir>/test/**/*.e2e-spec.ts'],
  // Vitest's tests (`npm run test:vitest`), which import their functions from 'vitest', and the
  // Nest 12 project's (test/compat/nest12, its own Vitest run: `npm run test:nest12`).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/kit/vitest/', '<rootDir>/test/compat/'],
  transform: { '^.+\\.ts$': ['@swc/jest'] },
  moduleFileExtensions: ['ts', 'js', 'json'],
  // The docs' code imports the package by name (test/docs compiles and runs it).
  moduleNameMapper: {
    '^nestjs-idempotent$': '<rootDir>/lib/index.ts',
    '^nestjs-idempotent/testing$': '<rootDir>/lib/testing/index.ts',
  },
  testTimeout: 30_000,
  // Servers started by the suites are stopped by them; this only guards against a stuck handle.
  forceExit: false,
};
