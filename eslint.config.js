import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'bench/results/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // Tests read arbitrary JSON answers; typing every one of them would only restate the assertions.
    files: ['test/**/*.ts', 'src/**/*.test.ts', 'packages/*/src/**/*.test.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // The dashboard's script runs in the browser, as is (no build step).
    files: ['assets/dashboard/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'document',
          'window',
          'location',
          'navigator',
          'fetch',
          'sessionStorage',
          'AbortController',
          'TextDecoderStream',
          'URLSearchParams',
          'Intl',
          'setTimeout',
          'clearTimeout',
          'setInterval',
          'clearInterval',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
  {
    // Plain Node scripts (no TypeScript, so they run before any build).
    files: ['scripts/**/*.mjs'],
    languageOptions: {
      globals: Object.fromEntries(['console', 'process', 'URL'].map((name) => [name, 'readonly'])),
    },
  },
);
