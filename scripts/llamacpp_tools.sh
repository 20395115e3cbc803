#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` and `llama-bench` from the source the installed
# llama-cpp-python was built from (its sdist carries llama.cpp in vendor/llama.cpp), with
# the same instruction-set flags as setup.sh, so that the tests' real server and the
# parity benchmark run the very engine the embedded backend runs.
# The binaries are cached per version and flags (only the first run pays, ~5-10 min on
# 2 cores): ${XDG_CACHE_HOME:-~/.cache}/pytest-tokrate/llama.cpp/<version>-<flags hash>/.
# Prints that directory on stdout. Needs .venv (scripts/setup.sh) and PyPI for the sdist.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=engine_flags.sh
. scripts/engine_flags.sh
version="$(.venv/bin/python -c 'import llama_cpp; print(llama_cpp.__version__)')"
key="$(printf '%s %s' "$version" "${CMAKE_ARGS:-}" | sha256sum | cut -c1-12)"
dest="${XDG_CACHE_HOME:-$HOME/.cache}/pytest-tokrate/llama.cpp/${version}-${key}"
if [ -x "$dest/llama-server" ] && [ -x "$dest/llama-bench" ] \
  && "$dest/llama-server" --version >/dev/null 2>&1; then
  echo "$dest"
  exit 0
fi
echo "tools: building llama-server and llama-bench from llama-cpp-python ${version}'s source (first time: ~5-10 min)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip download -q --no-deps \
  --no-binary :all: "llama-cpp-python==${version}" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
# shellcheck disable=SC2086
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF ${CMAKE_ARGS:-} >&2
cmake --build "$work/build" --config Release -j "$jobs" --target llama-server llama-bench >&2
mkdir -p "$dest.tmp"
cp "$work/build/bin/llama-server" "$work/build/bin/llama-bench" "$dest.tmp/"
"$dest.tmp/llama-server" --version >&2
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
