#!/usr/bin/env bash
# Installs every Debian package Karl needs (idempotent, non-interactive), then
# configures and builds with meson/ninja into build/.
#   scripts/setup.sh            install what is missing, configure, build
#   KARL_BUILD_DIR=dir          build somewhere else (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # toolchain
  g++ meson ninja-build pkg-config python3
  # libraries (pkg-config names in meson.build)
  dpdk dpdk-dev libdpdk-dev libsrtp2-dev libssl-dev libyaml-cpp-dev prometheus-cpp-dev
  libmariadb-dev libabsl-dev libspdlog-dev nlohmann-json3-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev
  # test peers and tools
  iproute2 iputils-ping curl procps clang-format
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${KARL_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR"
fi
ninja -C "$BUILD_DIR"
