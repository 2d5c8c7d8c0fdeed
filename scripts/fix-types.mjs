// Declarations keep the sources' `.ts` import suffixes; consumers resolve `./x.js` to `./x.d.ts` under every
// moduleResolution, so rewrite relative specifiers in dist/types to `.js`.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../dist/types/', import.meta.url).pathname;
let files = 0;
for (const entry of readdirSync(root, { recursive: true })) {
  const file = join(root, String(entry));
  if (!file.endsWith('.d.ts')) continue;
  const text = readFileSync(file, 'utf8');
  const fixed = text.replace(/(from\s+|import\()(['"])(\.{1,2}\/[^'"]+?)\.ts\2/g, '$1$2$3.js$2');
  if (fixed !== text) writeFileSync(file, fixed);
  files++;
}
if (!files) throw new Error(`no declarations under ${root}: did tsc -p tsconfig.types.json run?`);
