// Run by `trellis build` (trellis/build_js.py) beside componentize-js's node_modules.
// One argument: JSON {sourcePath, witPath, worldName, out, disableFeatures}.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const args = JSON.parse(process.argv[2]);
try {
  const { component } = await componentize({
    sourcePath: args.sourcePath,
    witPath: args.witPath,
    worldName: args.worldName,
    disableFeatures: args.disableFeatures,
  });
  await writeFile(args.out, component);
} catch (err) {
  console.error(err && err.message ? err.message : String(err));
  process.exit(1);
}
