// ESLint for the extension's TypeScript (with typescript-eslint's recommended rules); Prettier
// owns the formatting. `jlpm check` runs it, as scripts/test.sh and CI do.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'node_modules/', '.yarn/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts'],
    rules: {
      curly: 'error',
      eqeqeq: 'error',
      'prefer-const': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none' }]
    }
  }
);
