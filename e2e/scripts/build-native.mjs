#!/usr/bin/env node
/**
 * Builds the e2e package's C programs (native/*.c) with the machine's gcc
 * into native/build/. Each program is one file; it is rebuilt when its
 * source is newer than its binary. Run by `pnpm run build` after tsc.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const out = join(root, 'build');
const CFLAGS = ['-std=gnu11', '-O2', '-g', '-Wall', '-Wextra', '-Werror'];

mkdirSync(out, { recursive: true });
for (const file of readdirSync(root).filter((f) => f.endsWith('.c'))) {
  const src = join(root, file);
  const bin = join(out, file.slice(0, -2));
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) continue;
  const cc = process.env.CC ?? 'gcc';
  const args = [...CFLAGS, '-o', bin, src];
  process.stdout.write(`${cc} ${args.join(' ')}\n`);
  execFileSync(cc, args, { stdio: 'inherit' });
}
