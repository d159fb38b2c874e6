// Fills dist/ with the browser client exactly as the service serves it at /client/: every
// module in app/static/client with its types, copied byte for byte (nothing is transpiled or
// bundled, so the package and the service can never ship different code). `npm pack` and
// `npm publish` run it (prepack); `--clean` (postpack) removes dist/ again.
//
// What it checks, so that the package works as published:
// - its version must be the service's (`version` in pyproject.toml);
// - the package ships each module with its .d.ts, the types every entry point promises: a module
//   without one is left out (with a warning; s3gate.js itself is required);
// - a module may import only its shipped siblings, or an npm package this package.json declares
//   as a peer dependency ("no runtime dependencies" stays true, or fails here).
//
// Plain Node (18+), no dependencies. Messages go to stderr: `npm pack --json` owns stdout.

import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const checkout = join(here, "..", "..");
const source = join(checkout, "app", "static", "client");
const dist = join(here, "dist");
const MAIN = "s3gate";

function fail(message) {
  console.error(`s3gate-client build: ${message}`);
  process.exit(1);
}

if (process.argv.includes("--clean")) {
  rmSync(dist, { recursive: true, force: true });
  process.exit(0);
}

if (!existsSync(source)) fail(`no ${source}: build from an s3gate checkout`);
const manifest = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));

const serviceVersion = projectVersion(readFileSync(join(checkout, "pyproject.toml"), "utf8"));
if (manifest.version !== serviceVersion)
  fail(
    `package.json says ${manifest.version}, the service (pyproject.toml) is ${serviceVersion}: ` +
      `set "version": "${serviceVersion}" in clients/js/package.json`,
  );

const names = readdirSync(source).sort();
const modules = [];
for (const module of names.filter((n) => n.endsWith(".js")).map((n) => n.slice(0, -3))) {
  const where = relative(checkout, join(source, module));
  if (names.includes(`${module}.d.ts`)) modules.push(module);
  else if (module === MAIN) fail(`${where}.js has no ${module}.d.ts beside it`);
  else console.error(`s3gate-client build: WARNING: ${where}.js left out, it has no ${module}.d.ts`);
}
if (!modules.includes(MAIN)) fail(`no ${MAIN}.js in ${source}`);

const shipped = new Set(modules.flatMap((m) => [`${m}.js`, `${m}.d.ts`]));
const peers = new Set(Object.keys(manifest.peerDependencies ?? {}));
if (Object.keys(manifest.dependencies ?? {}).length) fail("the package has no runtime dependencies");
for (const name of shipped) {
  for (const specifier of importsOf(readFileSync(join(source, name), "utf8"))) {
    if (specifier.startsWith("./") || specifier.startsWith("../")) {
      if (!specifier.startsWith("./") || !shipped.has(specifier.slice(2)))
        fail(`${name} imports ${specifier}, which the package does not ship`);
    } else if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) {
      fail(`${name} imports a URL (${specifier}): a package cannot`);
    } else if (!peers.has(packageName(specifier))) {
      fail(
        `${name} imports ${specifier}: declare ${packageName(specifier)} in clients/js/package.json ` +
          `"peerDependencies" (and "peerDependenciesMeta" optional if only that module needs it)`,
      );
    }
  }
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
for (const name of shipped) copyFileSync(join(source, name), join(dist, name));
console.error(`s3gate-client build: dist/ holds ${[...shipped].sort().join(", ")}`);

/** `version` of pyproject.toml's [project] table. */
function projectVersion(toml) {
  let table = null;
  for (const line of toml.split("\n")) {
    const header = /^\[([^\]]+)\]\s*$/.exec(line);
    if (header) table = header[1].trim();
    const version = /^version\s*=\s*"([^"]+)"/.exec(line);
    if (table === "project" && version) return version[1];
  }
  return fail("pyproject.toml has no [project] version");
}

/** The specifiers a module imports: static `import`/`export ... from` at a line's start, dynamic `import("...")`. */
function importsOf(code) {
  const found = [];
  const patterns = [
    /^\s*(?:import|export)\s+[\w$*{},\s]+?\s+from\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const pattern of patterns) for (const match of code.matchAll(pattern)) found.push(match[1]);
  return found;
}

/** `@scope/name/sub` -> `@scope/name`, `name/sub` -> `name`. */
function packageName(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}
