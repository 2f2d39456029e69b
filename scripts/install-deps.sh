#!/usr/bin/env bash
# Install what adaptest's tests need on a fresh Debian 12 machine. Idempotent and quick when
# everything is already there: it only calls apt-get/pip for what is missing.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have iconv || need_apt+=(libc-bin)
have python3 || need_apt+=(python3 python3-pip)
have busybox || need_apt+=(busybox)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# JUnit is checked by an independent consumer, Python's junitparser (pinned).
if ! python3 -c 'import junitparser' 2>/dev/null; then
  echo "install-deps: pip install junitparser"
  python3 -m pip install -q --disable-pip-version-check 'junitparser==5.0.3' \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages 'junitparser==5.0.3'
fi
