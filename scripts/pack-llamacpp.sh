#!/bin/bash
# Packs llama.cpp for `bench --compare llama.cpp` on a GPU machine that has no npm (docs/bench.md):
# node-llama-cpp, its Vulkan build @node-llama-cpp/linux-x64-vulkan (--cpu: also the CPU build
# @node-llama-cpp/linux-x64) and node-llama-cpp's runtime dependencies, as installed by `npm ci`,
# into .device/llamacpp.tar.xz. There, from the project root: tar -xJf .device/llamacpp.tar.xz
# Left out: llama.cpp's source (node-llama-cpp/llama/gitRelease.bundle, only for building; the
# bench never builds), source maps, type declarations and markdown.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
builds=(node_modules/@node-llama-cpp/linux-x64-vulkan)
[ "${1:-}" = "--cpu" ] && builds+=(node_modules/@node-llama-cpp/linux-x64)
for b in node_modules/node-llama-cpp "${builds[@]}"; do
  [ -d "$b" ] || { echo "pack-llamacpp.sh: $b missing: run npm ci" >&2; exit 1; }
done
# node-llama-cpp and its production dependencies, transitively, where Node resolves them.
deps=$(node --input-type=module -e '
  import { existsSync, readFileSync } from "node:fs";
  import { dirname, join, relative } from "node:path";
  const seen = new Set();
  const resolve = (name, from) => {
    for (let d = from; ; d = dirname(d)) {
      const p = join(d, "node_modules", name);
      if (existsSync(join(p, "package.json"))) return p;
      if (dirname(d) === d) throw new Error(`${name} (needed by ${from}) is not installed`);
    }
  };
  const walk = (dir) => {
    if (seen.has(dir)) return;
    seen.add(dir);
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    for (const name of Object.keys(pkg.dependencies ?? {})) walk(resolve(name, dir));
  };
  walk(join(process.cwd(), "node_modules/node-llama-cpp"));
  // A package nested in another (x/node_modules/y) travels with it.
  const dirs = [...seen].map((d) => relative(process.cwd(), d));
  for (const d of dirs) if (!dirs.some((o) => d.startsWith(`${o}/node_modules/`))) console.log(d);
')
mkdir -p .device
# shellcheck disable=SC2086 # one path per word
tar -c --exclude='node-llama-cpp/llama/gitRelease.bundle' --exclude='*.map' --exclude='*.d.ts' \
  --exclude='*.md' $deps "${builds[@]}" | xz -T2 -6 > .device/llamacpp.tar.xz
echo "$(echo "$deps" | wc -l) packages + ${builds[*]}: $(du -h .device/llamacpp.tar.xz | cut -f1) in .device/llamacpp.tar.xz"
