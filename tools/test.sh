#!/usr/bin/env bash
# The README's one test command: set up what the tests need, then run them.
#
#   tools/test.sh [PYTEST ARGS...]      e.g. tools/test.sh -q tests/outbox -x
#
# The tests use the real things (a Mosquitto broker, Chromium, PostgreSQL, systemd-analyze, the LFW
# faces) and fail, rather than skip, when one is missing. So this script
#   1. installs the Debian packages that are missing (apt-get; with sudo when not root), and nothing else;
#   2. creates .venv (or reuses it) and installs the project with its test extras, again only when
#      pyproject.toml, the Python or the extras changed since the last install (stamp in .venv);
#   3. checks the LFW research set is where the tests read it, and says how to get it if not;
#   4. runs `python -m pytest` with the arguments given.
# A second run installs nothing and just runs the tests.
#
# Environment: EDGEFACE_LFW (the LFW folder; default ../shared/data/lfw), EDGEFACE_EXTRAS (extras to
# install, comma-separated; default test,peer: peer is the dlib-bin wheel `bench peer` compares against),
# EDGEFACE_TEST_SETUP_ONLY=1 or --setup-only as the first argument (set up, run nothing: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

setup_only="${EDGEFACE_TEST_SETUP_ONLY:-0}"
if [ "${1:-}" = "--setup-only" ]; then setup_only=1; shift; fi

# --- 1. Debian packages --------------------------------------------------------------------------------
# mosquitto (+ clients): the broker the tests start on free loopback ports; openssl: test certificates;
# chromium: the server's browser test (Playwright drives /usr/bin/chromium, never `playwright install`);
# postgresql: the migration test starts its own throwaway cluster; systemd: systemd-analyze verifies the
# unit file; python3-venv: the venv; g++ and python3-dev: annoy ships no wheels and builds from source;
# gpsd: the place tests run a real gpsd reading NMEA from a pseudo-terminal.
PACKAGES=(mosquitto mosquitto-clients openssl chromium postgresql systemd gpsd python3 python3-venv python3-dev g++)

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]; }

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 ||
        die "missing Debian packages: ${missing[*]}; not root and no sudo: run as root: apt-get install ${missing[*]}"
      sudo=(sudo)
    fi
    say "installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  say "not a Debian system: install the equivalents of ${PACKAGES[*]} yourself (the tests fail without them)"
fi

# --- 2. The venv and the project --------------------------------------------------------------------
extras="${EDGEFACE_EXTRAS:-test,peer}"
case ",$extras," in *,test,*) ;; *) extras="test,$extras" ;; esac
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
  say "creating .venv"
  rm -rf .venv
  python3 -m venv .venv
  # Debian's pip (23.0) builds sdists such as annoy the legacy setup.py way and warns; a current one does not.
  .venv/bin/python -m pip install -q --upgrade pip
fi
# The stamp names what was installed; a run that asks for a subset of it installs nothing.
stamp=.venv/.edgeface-test-setup
want_key="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])')"
have_key="" have_extras=""
if [ -f "$stamp" ]; then { read -r have_key || true; read -r have_extras || true; } <"$stamp"; fi
need_install=0
[ "$have_key" = "$want_key" ] || need_install=1
for e in ${extras//,/ }; do
  case ",$have_extras," in *,"$e",*) ;; *) need_install=1 ;; esac
done
if [ "$need_install" -eq 1 ]; then
  # Extras installed before stay installed, updated too when pyproject.toml changed.
  [ -n "$have_extras" ] && extras="$have_extras,$extras"
  extras="$(tr ',' '\n' <<<"$extras" | sort -u | paste -sd, -)"
  say "installing edgeface[$extras] into .venv"
  .venv/bin/python -m pip install -q -e ".[$extras]"
  printf '%s\n%s\n' "$want_key" "$extras" >"$stamp"
fi

# --- 3. LFW ----------------------------------------------------------------------------------------
lfw="${EDGEFACE_LFW:-../shared/data/lfw}"
if [ ! -d "$lfw/images" ] || [ ! -f "$lfw/pairs.txt" ]; then
  die "LFW not found at $lfw (want $lfw/images/<person>/<person>_0001.jpg and $lfw/pairs.txt).
  The tests read the Labeled Faces in the Wild research set (https://vis-www.cs.umass.edu/lfw/: lfw.tgz
  unpacked as images/, and pairs.txt); it is never copied into this repository. Put it at
  ../shared/data/lfw beside this checkout, or set EDGEFACE_LFW to its folder."
fi

# --- 4. The tests ----------------------------------------------------------------------------------
if [ "$setup_only" = "1" ]; then
  say "set up; not running the tests (--setup-only)"
  exit 0
fi
. .venv/bin/activate
exec python -m pytest "$@"
