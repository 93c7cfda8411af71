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
  dpdk dpdk-dev libdpdk-dev libipsec-mb-dev libsrtp2-dev libssl-dev libyaml-cpp-dev
  prometheus-cpp-dev
  libmariadb-dev libabsl-dev libspdlog-dev nlohmann-json3-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev
  # test peers and tools (rtpengine: the independent SRTP endpoint of the e2e tests)
  iproute2 iputils-ping curl procps clang-format rtpengine-daemon
  # SIP end to end (tests/e2e/test_kamailio.py): Kamailio (its rtpengine module ships
  # in the kamailio package), SIPp, tcpdump for the captures, python3-cryptography for
  # the SRTP the test makes and checks
  kamailio sip-tester tcpdump python3-cryptography
  # ICE end to end (tests/e2e/test_ice.py): a full ICE agent for /usr/bin/python3
  python3-aioice
)

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  # Packages that ship a daemon (rtpengine-daemon, kamailio) must not start it: the
  # tests run their own in namespaces. A policy-rc.d that says 101 ("action not
  # allowed") is how Debian's maintainer scripts are told so; put one in place only
  # for the install, unless the machine already has one.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
  if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || exit "$rc"
fi

# The system rtpengine service stays stopped and disabled whatever installed it
# (the tests start their own, userspace only); no-ops when it is not running.
if [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now rtpengine-daemon.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/rtpengine-daemon ]; then
  # Stops only the service's own process (by its pidfile), never a test's rtpengine.
  if [ -f /run/rtpengine/rtpengine-daemon.pid ]; then
    $SUDO /etc/init.d/rtpengine-daemon stop >/dev/null 2>&1 || true
  fi
  $SUDO update-rc.d rtpengine-daemon disable >/dev/null 2>&1 || true
fi

# Likewise the system Kamailio service (its own pidfile, /run/kamailio/kamailio.pid;
# the tests' Kamailio keeps its pid file in a temp dir).
if [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now kamailio.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/kamailio ]; then
  if [ -f /run/kamailio/kamailio.pid ]; then
    $SUDO /etc/init.d/kamailio stop >/dev/null 2>&1 || true
  fi
  $SUDO update-rc.d kamailio disable >/dev/null 2>&1 || true
fi

BUILD_DIR=${KARL_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR"
fi
ninja -C "$BUILD_DIR"
