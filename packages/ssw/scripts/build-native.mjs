// Build the NFQUEUE addon in native/ with node-gyp. Configures only when
// native/build is missing or binding.gyp changed, then builds incrementally:
// a full `node-gyp rebuild` deletes the addon first, which breaks any test
// run that loads it meanwhile. Headers come from npm_config_nodedir
// (default /usr, the distribution's node headers), so no download happens.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
const native = join(pkg, 'native');
const require = createRequire(join(pkg, 'package.json'));
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
const nodedir = process.env.npm_config_nodedir || '/usr';
const run = (cmd) =>
  execFileSync(process.execPath, [gyp, cmd, '--directory', native, `--nodedir=${nodedir}`], { stdio: 'inherit' });

const makefile = join(native, 'build', 'Makefile');
const stale = !existsSync(makefile) || statSync(makefile).mtimeMs < statSync(join(native, 'binding.gyp')).mtimeMs;
if (stale) run('configure');
run('build');
