#!/usr/bin/env bash
# Installs what qdc needs and builds what is stale; quick when everything is in place.
# Debian packages (as root): libtorch-dev (CPU libtorch 1.13), libopenblas0-pthread (fast BLAS),
# libgloo-dev (Gloo headers: data-parallel training on c10d),
# g++/make/python3 for node-gyp, and the text the offline benchmark is built from (WordNet, FOLDOC,
# man pages, the Python and Perl documentation, apt's English long descriptions). Then npm
# dependencies, the native addon and the TypeScript build.
# TORCH_DIR / TORCH_CUDA / TORCH_CXX11_ABI select another libtorch (see native/torch-paths.cjs).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[setup] %s\n' "$*" >&2; }

apt_packages=(g++ make python3 wordnet-base dict-foldoc manpages manpages-dev python3.11-doc perl-doc)
[ -n "${TORCH_DIR:-}" ] || apt_packages+=(libtorch-dev libopenblas0-pthread libgloo-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: ${missing[*]}; run as root: apt-get install -y ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# apt's English package descriptions (the benchmark's debian task): fetched by apt-get update
# when the lists have no Translation-en
if ! ls /var/lib/apt/lists/*_i18n_Translation-en* >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    log "no apt Translation-en lists; run as root: apt-get update -o Acquire::Languages=en"
    exit 1
  fi
  log "fetching apt's English package descriptions"
  apt-get update -qq -o Acquire::Languages=en
fi

# npm dependencies at the lock file's versions, when it changed since the last install. (`npm ci`
# refuses this lock file: npm 11 records Biome's binary only for the platforms it resolved, and ci
# demands every optional platform package; `npm install` honours the same pinned versions.)
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"
  npm install --no-audit --no-fund --loglevel=error
fi

# native addon: rebuild when its sources changed, another libtorch was chosen or what it can be
# built with changed (Gloo's headers installed: the defines)
addon=native/build/Release/qdc.node
torch_env="TORCH_DIR=${TORCH_DIR:-} TORCH_CUDA=${TORCH_CUDA:-} TORCH_CXX11_ABI=${TORCH_CXX11_ABI:-} DEFINES=$(node native/torch-paths.cjs defines)"
stamp=native/build/torch-env
if [ ! -f "$addon" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$torch_env" ] ||
  [ -n "$(find native/src native/binding.gyp native/torch-paths.cjs -newer "$addon" -print -quit)" ]; then
  log "building the native addon ($torch_env)"
  npm run --silent build:native >native-build.log 2>&1 || { tail -40 native-build.log >&2; exit 1; }
  echo "$torch_env" >"$stamp"
fi

# TypeScript: rebuild when a source is newer than the last build
if [ ! -f dist/.tsbuildinfo ] ||
  [ -n "$(find src test bench tsconfig.json package.json -newer dist/.tsbuildinfo -print -quit)" ]; then
  log "compiling TypeScript"
  npm run --silent build:ts || { rm -f dist/.tsbuildinfo; exit 1; }
  touch dist/.tsbuildinfo
fi
