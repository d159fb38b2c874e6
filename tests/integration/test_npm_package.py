"""The browser client as the npm package `s3gate-client` (clients/js): `npm pack` builds it from
the very files the service serves at /client/, the tarball installs with `npm install`, plain
Node imports it, and the React example (docs/examples/react/) type-checks against its types."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.http.assets import STATIC_DIR
from tests.support import unavailable

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"
CLIENT = ROOT / "app" / "static" / "client"
EXAMPLE = ROOT / "docs" / "examples" / "react"
# npm and Node belong to the browser toolchain: where the browser tests must run (CI), so must
# this one.
REQUIRE_NPM = os.environ.get("S3GATE_TEST_REQUIRE_BROWSER", "") == "1"
# What the type-check installs beside the tarball, from the npm registry, pinned.
TYPESCRIPT = "typescript@5.9.3"
TYPES_REACT = "@types/react@19.3.3"

# Were the package's types missing or `any`, these expected errors would not happen and tsc
# would fail on the unused `@ts-expect-error`s: the type-check proves something.
PROBE = """\
import { S3gateClient, type S3gateFile } from "s3gate-client";
import { useS3gateUpload, type S3gateUpload } from "./useS3gateUpload";

declare const file: S3gateFile;
// @ts-expect-error: an id is a string
export const id: number = file.id;
const client = new S3gateClient({ baseUrl: "https://files.example.com/" });
// @ts-expect-error: upload takes a Blob
export const wrong = client.upload("not a blob");
export const hook: (options: Parameters<typeof useS3gateUpload>[0]) => S3gateUpload =
  useS3gateUpload;
"""

# Loaded by Node: no window, document, XMLHttpRequest or localStorage here.
IMPORT_CHECK = """\
import { fileURLToPath } from "node:url";
import * as client from "s3gate-client";
const { S3gateClient, S3gateError, createClient } = client;
const s3gate = createClient({ baseUrl: "https://files.example.com/" });
let refused = null;
try {
  await s3gate.list();
} catch (error) {
  refused = { isS3gateError: error instanceof S3gateError, code: error.code };
}
const subpaths = {};
const loaded = {};
for (const name of JSON.parse(process.argv[2])) {
  subpaths[name] = fileURLToPath(import.meta.resolve(`s3gate-client/${name}`));
  loaded[name] = Object.keys(await import(`s3gate-client/${name}`)).sort();
}
console.log(JSON.stringify({
  exports: Object.keys(client).sort(),
  isClient: s3gate instanceof S3gateClient,
  refused,
  main: fileURLToPath(import.meta.resolve("s3gate-client")),
  subpaths,
  loaded,
}));
"""


@dataclass(frozen=True)
class Packed:
    tarball: Path
    files: set[str]
    manifest: dict[str, Any]


def _client_modules() -> list[str]:
    """Every module the service serves at /client/ with its types (a `.js` and its `.d.ts`): what
    the package ships (the build leaves out, with a warning, a module whose types are missing)."""
    modules = (p.name.removesuffix(".js") for p in CLIENT.glob("*.js"))
    return sorted(m for m in modules if (CLIENT / f"{m}.d.ts").is_file())


def _run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def npm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """npm with its cache in a session temp dir, quiet, never asking the registry about audits."""
    for tool in ("npm", "node"):
        if shutil.which(tool) is None:
            message = f"{tool} is not installed (Debian: apt-get install nodejs npm; Node 18+)"
            unavailable(message, required=REQUIRE_NPM)
    return {
        **os.environ,
        "npm_config_cache": str(tmp_path_factory.mktemp("npm-cache")),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "npm_config_progress": "false",
    }


@pytest.fixture(scope="module")
def packed(npm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Packed:
    """`npm pack` in clients/js (its prepack script builds dist/, postpack removes it)."""
    destination = tmp_path_factory.mktemp("pack")
    pack = ["npm", "pack", "--json", "--foreground-scripts=false"]
    result = _run([*pack, "--pack-destination", str(destination)], cwd=PACKAGE, env=npm_env)
    (report,) = json.loads(result.stdout)
    tarball = destination / report["filename"]
    assert tarball.is_file(), report
    with tarfile.open(tarball, "r:gz") as archive:
        member = archive.extractfile("package/package.json")
        assert member is not None
        manifest = json.load(member)
    assert not (PACKAGE / "dist").exists(), "postpack leaves no dist/ in the checkout"
    return Packed(tarball, {entry["path"] for entry in report["files"]}, manifest)


@pytest.fixture(scope="module")
def consumer(
    packed: Packed, npm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A fresh project outside the checkout with the tarball installed, as an app installs it."""
    project = tmp_path_factory.mktemp("consumer")
    manifest = {"name": "s3gate-consumer", "private": True, "type": "module"}
    (project / "package.json").write_text(json.dumps(manifest), encoding="utf-8")
    _run(
        ["npm", "install", "--ignore-scripts", str(packed.tarball), TYPESCRIPT, TYPES_REACT],
        cwd=project,
        env=npm_env,
    )
    return project


def test_the_package_is_built_from_the_directory_the_service_serves_at_client() -> None:
    assert (STATIC_DIR / "client").resolve() == CLIENT.resolve()
    assert "s3gate" in _client_modules()


def test_npm_pack_ships_every_client_module_with_its_types_and_nothing_else(
    packed: Packed,
) -> None:
    shipped = {f"dist/{m}{suffix}" for m in _client_modules() for suffix in (".js", ".d.ts")}
    assert packed.files == {"package.json", "README.md", *shipped}


def test_the_packed_modules_are_byte_identical_to_what_the_service_serves(
    packed: Packed,
) -> None:
    with tarfile.open(packed.tarball, "r:gz") as archive:
        for module in _client_modules():
            for name in (f"{module}.js", f"{module}.d.ts"):
                member = archive.extractfile(f"package/dist/{name}")
                assert member is not None, name
                assert member.read() == (CLIENT / name).read_bytes(), name


def test_the_manifest_is_an_es_module_with_types_and_no_dependencies(packed: Packed) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    manifest = packed.manifest
    assert manifest["name"] == "s3gate-client"
    assert manifest["version"] == pyproject["project"]["version"]
    assert packed.tarball.name == f"s3gate-client-{manifest['version']}.tgz"
    assert manifest["type"] == "module"
    assert manifest["sideEffects"] is False
    assert manifest["types"] == "./dist/s3gate.d.ts"
    assert manifest["exports"]["."] == {
        "types": "./dist/s3gate.d.ts",
        "default": "./dist/s3gate.js",
    }
    assert not manifest.get("dependencies")
    # A peer only for what a shipped module imports, and optional (the build checks the first).
    peers = manifest.get("peerDependencies", {})
    optional = manifest.get("peerDependenciesMeta", {})
    assert all(optional.get(name, {}).get("optional") for name in peers), manifest


def test_node_imports_the_installed_package_without_a_browser(
    consumer: Path, npm_env: dict[str, str]
) -> None:
    script = consumer / "import-check.mjs"
    script.write_text(IMPORT_CHECK, encoding="utf-8")
    others = [m for m in _client_modules() if m != "s3gate"]
    result = _run(["node", str(script), json.dumps(others)], cwd=consumer, env=npm_env)
    seen = json.loads(result.stdout)
    installed = consumer / "node_modules" / "s3gate-client"
    assert {"S3gateClient", "S3gateError", "createClient", "defaultBaseUrl"} <= set(seen["exports"])
    assert seen["isClient"] is True
    # A call that needs no network: the client refuses it itself, with its own error type.
    assert seen["refused"] == {"isS3gateError": True, "code": "missing_token"}
    assert Path(seen["main"]) == (installed / "dist" / "s3gate.js").resolve()
    # Every other module is a subpath (`s3gate-client/uppy`), and loads outside a browser too.
    for name in others:
        assert Path(seen["subpaths"][name]) == (installed / "dist" / f"{name}.js").resolve()
        assert seen["loaded"][name], name


def test_the_react_hook_type_checks_against_the_package_types(
    consumer: Path, npm_env: dict[str, str]
) -> None:
    for source in EXAMPLE.iterdir():
        if source.suffix in {".ts", ".tsx", ".json"}:
            shutil.copyfile(source, consumer / source.name)
    (consumer / "probe.ts").write_text(PROBE, encoding="utf-8")
    tsc = str(consumer / "node_modules" / ".bin" / "tsc")
    # As a Next.js app resolves it (the example's tsconfig: bundler resolution, react-jsx).
    _run([tsc, "-p", "tsconfig.json", "--noEmit", "--strict"], cwd=consumer, env=npm_env)
    # And as Node's ESM resolution does (the package's `exports` with their `types`).
    node16 = {
        "extends": "./tsconfig.json",
        "compilerOptions": {"module": "node16", "moduleResolution": "node16"},
        "include": ["useS3gateUpload.ts"],
    }
    (consumer / "tsconfig.node16.json").write_text(json.dumps(node16), encoding="utf-8")
    _run([tsc, "-p", "tsconfig.node16.json", "--noEmit", "--strict"], cwd=consumer, env=npm_env)
