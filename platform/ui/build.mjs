// Build the UI into dist/ (reproducible: `npm ci && npm run build`), or with
// --tests bundle tests/ui/*.test.ts for node and run them with `node --test`.
//
// dist/build-info.json records a hash of every input (src/, package files,
// this script); tests/ui/test_dist_fresh.py recomputes it to catch a stale
// dist/.

import * as esbuild from 'esbuild';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const root = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(root, 'dist');
const repo = path.resolve(root, '..', '..');

/** Files whose content determines the build, as sorted relative paths. */
function inputFiles() {
  const out = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push(path.relative(root, full).split(path.sep).join('/'));
    }
  };
  walk(path.join(root, 'src'));
  out.push('package.json', 'package-lock.json', 'build.mjs');
  return out.sort();
}

export function sourceHash() {
  const h = crypto.createHash('sha256');
  for (const rel of inputFiles()) {
    h.update(rel + '\0');
    h.update(fs.readFileSync(path.join(root, rel)));
    h.update('\0');
  }
  return h.digest('hex');
}

/** KaTeX's stylesheet with only the woff2 fonts (every current browser has woff2). */
function katexCssSource() {
  const css = fs.readFileSync(path.join(root, 'node_modules/katex/dist/katex.min.css'), 'utf8');
  const slim = css.replace(/,url\([^)]*\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)/g, '');
  const dir = path.join(root, 'node_modules/.zasper-build');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'katex.css');
  fs.writeFileSync(file, slim.replaceAll('url(fonts/', `url(${path.join(root, 'node_modules/katex/dist/fonts')}/`));
  return file;
}

function outputsOf(meta, ext) {
  return Object.keys(meta.outputs).filter((f) => f.endsWith(ext)).map((f) => path.basename(f));
}

async function build() {
  fs.rmSync(dist, { recursive: true, force: true });
  fs.mkdirSync(dist, { recursive: true });
  const common = { bundle: true, minify: true, outdir: dist, metafile: true, logLevel: 'warning', legalComments: 'external' };
  const katex = await esbuild.build({
    ...common,
    entryPoints: { katex: katexCssSource() },
    entryNames: '[name]-[hash]',
    assetNames: 'fonts/[name]-[hash]',
    loader: { '.woff2': 'file' },
  });
  const katexCss = outputsOf(katex.metafile, '.css')[0];
  // ipywidgets' stylesheet, linked by the widget chunk when it loads.
  const widgetCssBuild = await esbuild.build({
    ...common,
    entryPoints: { widgets: path.join(root, 'node_modules/@jupyter-widgets/controls/css/widgets.css') },
    entryNames: '[name]-[hash]',
    assetNames: 'assets/[name]-[hash]',
    loader: { '.svg': 'dataurl', '.png': 'dataurl' },
  });
  const widgetsCss = outputsOf(widgetCssBuild.metafile, '.css')[0];
  const app = await esbuild.build({
    ...common,
    entryPoints: { main: path.join(root, 'src/main.ts') },
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    format: 'esm',
    splitting: true,
    target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
    define: { KATEX_CSS: JSON.stringify(`./${katexCss}`), WIDGETS_CSS: JSON.stringify(`./${widgetsCss}`) },
  });
  const entry = Object.entries(app.metafile.outputs).find(([, o]) => o.entryPoint && o.entryPoint.endsWith('src/main.ts'));
  const js = path.basename(entry[0]);
  const css = path.basename(entry[1].cssBundle);
  const html = fs.readFileSync(path.join(root, 'src/index.html'), 'utf8').replace('%JS%', js).replace('%CSS%', css);
  fs.writeFileSync(path.join(dist, 'index.html'), html);
  // Pre-compressed copies: the server sends them as-is, spending no CPU on gzip.
  const sizes = {};
  for (const f of fs.readdirSync(dist)) {
    if (!/\.(js|css)$/.test(f)) continue;
    const raw = fs.readFileSync(path.join(dist, f));
    const gz = zlib.gzipSync(raw, { level: 9 });
    fs.writeFileSync(path.join(dist, f + '.gz'), gz);
    sizes[f] = { bytes: raw.length, gzip: gz.length };
  }
  const initial = [js, css, ...app.metafile.outputs[entry[0]].imports.filter((i) => i.kind === 'import-statement').map((i) => path.basename(i.path))];
  // Lazily imported modules (KaTeX, widgets): their chunk plus chunks only they load.
  const initialSet = new Set(initial);
  const lazy = {};
  for (const [file, o] of Object.entries(app.metafile.outputs)) {
    if (!file.endsWith('.js') || !o.entryPoint || o.entryPoint.endsWith('src/main.ts')) continue;
    const name = o.entryPoint.includes('katex') ? 'katex' : path.basename(o.entryPoint).replace(/\.[^.]+$/, '');
    const own = [path.basename(file), ...o.imports.filter((i) => i.kind === 'import-statement').map((i) => path.basename(i.path))].filter((f) => !initialSet.has(f));
    lazy[name] = { files: own, gzipBytes: own.reduce((n, f) => n + (sizes[f]?.gzip ?? 0), 0) };
  }
  const info = {
    sourceHash: sourceHash(),
    entry: { js, css },
    katexCss,
    widgetsCss,
    initialFiles: initial,
    initialGzipBytes: initial.reduce((n, f) => n + (sizes[f]?.gzip ?? 0), 0),
    lazy,
    files: sizes,
  };
  fs.writeFileSync(path.join(dist, 'build-info.json'), JSON.stringify(info, null, 2) + '\n');
  console.log(`built ${js} + ${css}; initial JS+CSS ${(info.initialGzipBytes / 1024).toFixed(1)} KB gzipped`);
}

async function runTests() {
  const testDir = path.join(repo, 'tests', 'ui');
  const tests = fs.readdirSync(testDir).filter((f) => f.endsWith('.test.ts'));
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'zasper-ui-tests-'));
  try {
    await esbuild.build({
      entryPoints: tests.map((t) => path.join(testDir, t)),
      bundle: true,
      platform: 'node',
      format: 'esm',
      outdir: out,
      outExtension: { '.js': '.mjs' },
      nodePaths: [path.join(root, 'node_modules')],
      define: { KATEX_CSS: '""', WIDGETS_CSS: '""' },
      // jsdom is loaded at run time from node_modules, not bundled.
      external: ['jsdom'],
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
      logLevel: 'warning',
    });
    const env = { ...process.env, NODE_PATH: path.join(root, 'node_modules') };
    const files = fs.readdirSync(out).filter((f) => f.endsWith('.mjs')).map((f) => path.join(out, f));
    // Bundles import jsdom by bare name: link node_modules next to them.
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(out, 'node_modules'), 'dir');
    const r = spawnSync(process.execPath, ['--test', ...files], { stdio: 'inherit', env });
    process.exitCode = r.status ?? 1;
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv.includes('--tests')) await runTests();
else if (process.argv.includes('--hash')) console.log(sourceHash());
else await build();
