#!/usr/bin/env bash
# Install what adaptest's tests need on a fresh Debian 12 machine. Idempotent and quick when
# everything is already there: it only calls apt-get/pip for what is missing.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have iconv || need_apt+=(libc-bin)
have python3 || need_apt+=(python3 python3-pip)
have busybox || need_apt+=(busybox)
# plugin tests: the example plugin's product; `cc` builds a C plugin; `prove` (Perl) is a TAP producer
have memcached || need_apt+=(memcached)
have cc || need_apt+=(gcc)
have prove || need_apt+=(perl)
# ssh target tests: a private sshd on 127.0.0.1 and the client (ssh, ssh-keygen)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
have ssh || need_apt+=(openssh-client)
# certification report tests: the report rendered in headless Chromium (with CJK fonts, so the
# Chinese report's screenshot shows glyphs); bundles checked independently with OpenSSL and tar
have chromium || need_apt+=(chromium)
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 \
  || need_apt+=(fonts-noto-cjk)
have openssl || need_apt+=(openssl)
have tar || need_apt+=(tar)
have gzip || need_apt+=(gzip)
# SQL client adapters: psql, the mysql/mariadb client and the sqlite3 shell run on the target;
# runuser (util-linux) starts the private password-checking PostgreSQL of the SQL tests
have psql || need_apt+=(postgresql-client)
have mysql || need_apt+=(mariadb-client)
have sqlite3 || need_apt+=(sqlite3)
have runuser || need_apt+=(util-linux)
# Foreign-arch payloads and guest images (scripts/build-payloads.sh, `adaptest image build`):
# installed here, up front, because those builds run in the background side by side and two
# apt-get runs at once would fight over apt's locks.
pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in debootstrap cpio kmod e2fsprogs qemu-user-static binfmt-support dpkg-dev make tcl \
  autotools-dev libc6-dev tzdata; do
  pkg "$p" || need_apt+=("$p")
done

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# qemu-system targets: the Debian 12 system emulators. This machine image ships a newer
# qemu-utils that conflicts with them, so qemu-utils is pinned to the emulators' own version.
if ! have qemu-system-aarch64 || ! have qemu-system-x86_64 || ! have qemu-system-loongarch64 \
  || ! have qemu-img; then
  echo "install-deps: apt-get install qemu-system-arm qemu-system-misc qemu-system-x86 qemu-utils"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')
  [ -n "$v" ] && [ "$v" != "(none)" ] || v=1:7.2+dfsg-7+deb12u18+b3
  apt-get install -y -qq --no-install-recommends --allow-downgrades "qemu-utils=$v" \
    qemu-system-arm qemu-system-misc qemu-system-x86 >/dev/null
fi

# JUnit is checked by an independent consumer, Python's junitparser (pinned).
if ! python3 -c 'import junitparser' 2>/dev/null; then
  echo "install-deps: pip install junitparser"
  python3 -m pip install -q --disable-pip-version-check 'junitparser==5.0.3' \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages 'junitparser==5.0.3'
fi

# import tests: pytest is a real JUnit producer (pinned).
if ! python3 -c 'import pytest' 2>/dev/null; then
  echo "install-deps: pip install pytest"
  python3 -m pip install -q --disable-pip-version-check 'pytest==9.0.3' \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages 'pytest==9.0.3'
fi
