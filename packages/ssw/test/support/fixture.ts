/**
 * Byte fixtures: hex files under `test/fixtures/`. Lines starting with `#`
 * are comments; whitespace is ignored.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// Compiled tests run from dist/test/support; fixtures stay in test/fixtures.
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

/** The bytes of fixture `name` (for example `lo-syn-partial.hex`). */
export function fixture(name: string): Buffer {
  const text = readFileSync(FIXTURES + name, 'utf8');
  const hex = text
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .join('')
    .replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new Error(`fixture ${name} is not hex`);
  return Buffer.from(hex, 'hex');
}
