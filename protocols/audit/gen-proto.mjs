// Generates the static protobuf code for the audit stream (protocols/audit/gen/, git-ignored).
// Skips when every output is newer than the .proto, so `npm run proto` is cheap to run before
// every build or test. 64-bit fields come out as JS numbers (--force-number): seqs, times and
// latencies stay far below 2^53, and numbers keep the hot path free of Long objects.
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import cli from 'protobufjs-cli';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const proto = join(root, 'protocols/audit/audit.proto');
const outDir = join(root, 'protocols/audit/gen');
const outJs = join(outDir, 'audit.js');
const outDts = join(outDir, 'audit.d.ts');
// The schema itself (protobufjs reflection JSON), for code that walks the fields rather than
// naming them: the collector's NDJSON writer (src/collector/lines.ts).
const outDescriptor = join(outDir, 'audit-descriptor.js');
const outDescriptorDts = join(outDir, 'audit-descriptor.d.ts');

async function mtime(path) {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return -1;
  }
}

function run(tool, args) {
  return new Promise((resolve, reject) => {
    tool.main(args, (err, output) => (err ? reject(err) : resolve(output)));
  });
}

async function writeAtomically(path, text) {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

export async function generate({ force = false } = {}) {
  const src = await mtime(proto);
  if (src < 0) throw new Error(`${proto}: not found`);
  const scriptTime = await mtime(fileURLToPath(import.meta.url));
  const newest = Math.max(src, scriptTime);
  const outputs = [outJs, outDts, outDescriptor, outDescriptorDts];
  if (!force && (await Promise.all(outputs.map(mtime))).every((t) => t > newest)) return false;
  await mkdir(outDir, { recursive: true });

  const tmpJs = join(outDir, `.audit.${process.pid}.js`);
  try {
    await emit(tmpJs);
  } finally {
    await rm(tmpJs, { force: true });
  }
  return true;
}

async function emit(tmpJs) {
  await run(cli.pbjs, [
    '-t', 'static-module', '-w', 'es6', '--es6', '--force-number',
    '--no-beautify', '--no-verify', '--no-service', '--no-typeurl',
    '-o', tmpJs, proto,
  ]);
  // protobufjs is CommonJS without an "exports" map: under Node ESM the specifier needs the .js
  // extension, and the namespace object of a CJS module is only reliable through its default export.
  let js = await readFile(tmpJs, 'utf8');
  const importLine = /import (?:\* as )?\$protobuf from "protobufjs\/minimal(?:\.js)?";/;
  if (!importLine.test(js)) throw new Error('pbjs output changed: protobufjs/minimal import not found');
  js = js.replace(importLine, 'import $protobuf from "protobufjs/minimal.js";');
  await writeFile(tmpJs, js);

  const dts = await run(cli.pbts, ['--no-comments', tmpJs]);
  await writeAtomically(outDts, String(dts).replace(/from "protobufjs"/g, 'from "protobufjs/minimal.js"'));
  await writeAtomically(outJs, js);

  const descriptor = await run(cli.pbjs, ['-t', 'json', proto]);
  await writeAtomically(outDescriptor, `// Generated from audit.proto by gen-proto.mjs.\nexport default ${String(descriptor).trim()};\n`);
  await writeAtomically(outDescriptorDts, "import type { INamespace } from 'protobufjs';\ndeclare const descriptor: INamespace;\nexport default descriptor;\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const force = process.argv.includes('--force');
  const t0 = performance.now();
  generate({ force }).then(
    (did) => {
      const ms = (performance.now() - t0).toFixed(0);
      console.log(did ? `proto: generated protocols/audit/gen/audit{,-descriptor}.{js,d.ts} in ${ms} ms` : 'proto: up to date');
    },
    (err) => {
      console.error(`proto: ${err.message ?? err}`);
      process.exitCode = 1;
    },
  );
}
