#!/usr/bin/env bash
# Build the foreign-architecture payloads that the qemu-user tests (and bench/qemu-user.sh) run:
#
#   debian-bookworm-arm64/   arm64 Debian 12 minbase rootfs (debootstrap + binfmt) with
#                            redis-server installed inside
#   loongarch64-sysroot/     a minimal LoongArch64 root: static busybox (the shell and the
#                            userland), mawk, sqlite3, redis-server, redis-cli and
#                            redis-benchmark, all cross-built from Debian 12 sources with zig
#                            (static musl)
#
# Idempotent: each payload lands in ${ADAPTEST_CACHE:-$HOME/.cache/adaptest}/payloads/<name>
# only once it is complete (built in <name>.tmp, then renamed), and a complete payload is
# reused (rebuilt when its recipe number below changes). A lock per payload serialises
# concurrent callers (parallel tests). The binfmt_misc entry a payload runs through is checked
# (and enabled) every time, also for a cached payload. Installs what it needs with apt/pip.
# Needs root (debootstrap, chroot, binfmt_misc).
#
# Usage: scripts/build-payloads.sh [all|aarch64|loongarch64]...      (default: all)
# Prints one line per payload: `<name> <path>`.
set -euo pipefail

ZIG_VERSION=0.17.1 # checked with `pip index versions ziglang`
# Bump when a recipe changes: a cached payload built by another recipe is rebuilt.
ARM64_RECIPE=1
LOONG_RECIPE=3
CACHE="${ADAPTEST_CACHE:-$HOME/.cache/adaptest}/payloads"
ARM64="$CACHE/debian-bookworm-arm64"
LOONG="$CACHE/loongarch64-sysroot"
MARK=.adaptest-payload

# current DIR RECIPE: is DIR a complete payload built by recipe RECIPE?
current() { [ -e "$1/$MARK" ] && [ "$(head -n 1 "$1/$MARK")" = "recipe $2" ]; }

log() { echo "build-payloads: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and binfmt_misc need it)"
mkdir -p "$CACHE"

# --- helpers -------------------------------------------------------------------------------

# apt_install PKG...: install the packages that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# enable_binfmt ARCH: foreign ELF binaries of ARCH run through qemu (also inside a chroot).
enable_binfmt() {
  local f="/proc/sys/fs/binfmt_misc/qemu-$1"
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if [ -e "$f" ] && [ "$(head -n 1 "$f")" = enabled ]; then return 0; fi
  update-binfmts --enable "qemu-$1" || true
  if [ ! -e "$f" ] && [ -r "/usr/lib/binfmt.d/qemu-$1.conf" ]; then
    cat "/usr/lib/binfmt.d/qemu-$1.conf" > /proc/sys/fs/binfmt_misc/register
  fi
  [ -e "$f" ] && [ "$(head -n 1 "$f")" = enabled ] || die "binfmt_misc for qemu-$1 is not enabled"
}

# The Debian mirror this machine's apt uses (never written into the repository).
debian_mirror() {
  local m=
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk 'BEGIN { RS = ""; FS = "\n" }
      /(^|\n)Types:[^\n]*deb([ \n]|$)/ && /(^|\n)Suites:[^\n]*bookworm([ \n]|$)/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, w, /[ \t]+/); print w[2]; exit }
      }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" { u = ($2 ~ /^\[/) ? $3 : $2; s = ($2 ~ /^\[/) ? $4 : $3;
             if (s == "bookworm") { print u; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || die "no Debian bookworm mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  echo "$m"
}

# umount_under DIR: unmount everything mounted at or below DIR (deepest first).
umount_under() {
  local d m
  d=$(realpath -m "$1")
  awk -v d="$d" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  if awk -v d="$d" '$2 == d || index($2, d "/") == 1 { f = 1 } END { exit !f }' /proc/mounts; then
    die "$d still has mounts below it"
  fi
}

# safe_rm DIR: remove a directory tree that may have /proc, /dev ... mounted inside.
safe_rm() {
  [ -e "$1" ] || return 0
  umount_under "$1"
  rm -rf --one-file-system "$1"
}

# retire DIR: remove an outdated payload, unless something has file systems mounted inside it
# (a run using it right now): then stop rather than pull them away.
retire() {
  [ -e "$1" ] || return 0
  local d
  d=$(realpath -m "$1")
  if awk -v d="$d" 'index($2, d "/") == 1 { f = 1 } END { exit !f }' /proc/mounts; then
    die "$d is in use (file systems are mounted inside it); rerun when that run has ended"
  fi
  rm -rf --one-file-system "$1"
}

# mount_chroot_fs ROOT: what apt and maintainer scripts need inside a chroot (undone by umount_under).
mount_chroot_fs() {
  mount -t proc proc "$1/proc"
  mount --bind /sys "$1/sys"
  mount --bind /dev "$1/dev"
  mount --bind /dev/pts "$1/dev/pts"
}

# --- arm64 Debian rootfs -------------------------------------------------------------------

build_arm64() {
  exec 8>"$CACHE/.lock-arm64"
  flock 8
  apt_install qemu-user-static binfmt-support
  enable_binfmt aarch64
  if current "$ARM64" "$ARM64_RECIPE"; then log "arm64 rootfs: cached"; echo "debian-bookworm-arm64 $ARM64"; return; fi
  local t0=$SECONDS tmp="$ARM64.tmp" mirror from=${ADAPTEST_ARM64_ROOTFS_FROM:-}
  safe_rm "$tmp"
  if [ -n "$from" ] && [ -x "$from/usr/bin/redis-server" ] && [ -d "$from/usr/share/zoneinfo" ]; then
    # The root of an `adaptest image build --arch aarch64 --packages redis-server` image is the
    # same Debian 12 arm64 minbase (plus sshd and the kernel's modules): copying it saves a
    # second debootstrap (2-4 min). The copy is private, so chroot mounts never touch the image.
    log "arm64 rootfs: copy of $from"
    cp -a "$from" "$tmp"
  else
    apt_install debootstrap
    mirror=$(debian_mirror)
    log "arm64 rootfs: debootstrap (2-4 min)"
    debootstrap --arch=arm64 --variant=minbase --include=tzdata bookworm "$tmp" "$mirror" >"$CACHE/debootstrap-arm64.log" 2>&1 ||
      die "debootstrap failed, see $CACHE/debootstrap-arm64.log"
  fi
  trap 'umount_under "$ARM64.tmp"' EXIT
  rm -f "$tmp/etc/resolv.conf"
  cat /etc/resolv.conf > "$tmp/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
  chmod 755 "$tmp/usr/sbin/policy-rc.d"
  [ -s "$tmp/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$tmp/etc/hosts"
  mount_chroot_fs "$tmp"
  if [ ! -x "$tmp/usr/bin/redis-server" ]; then
    log "arm64 rootfs: apt-get install redis-server (under emulation)"
    if ! chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >"$CACHE/apt-arm64.log" 2>&1; then
      chroot "$tmp" apt-get update -q >>"$CACHE/apt-arm64.log" 2>&1
      chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >>"$CACHE/apt-arm64.log" 2>&1 ||
        die "installing redis-server in the arm64 rootfs failed, see $CACHE/apt-arm64.log"
    fi
  fi
  chroot "$tmp" apt-get clean
  umount_under "$tmp"
  trap - EXIT
  printf 'recipe %s\ndebian-bookworm-arm64 built %s by scripts/build-payloads.sh%s\n' "$ARM64_RECIPE" "$(date -u +%FT%TZ)" "${from:+ from $from}" > "$tmp/$MARK"
  retire "$ARM64"
  mv "$tmp" "$ARM64"
  log "arm64 rootfs: built in $((SECONDS - t0)) s"
  echo "debian-bookworm-arm64 $ARM64"
}

# --- LoongArch64 sysroot -------------------------------------------------------------------

# ensure_zig: zig (the C cross compiler) from PyPI, pinned; prints the path of the zig binary.
ensure_zig() {
  local dir
  if ! dir=$(python3 -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))' 2>/dev/null) ||
    [ "$("$dir/zig" version 2>/dev/null)" != "$ZIG_VERSION" ]; then
    log "pip install ziglang==$ZIG_VERSION"
    python3 -m pip install -q --disable-pip-version-check "ziglang==$ZIG_VERSION" >&2 ||
      python3 -m pip install -q --disable-pip-version-check --break-system-packages "ziglang==$ZIG_VERSION" >&2
    dir=$(python3 -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))')
  fi
  echo "$dir/zig"
}

# ensure_deb_src: a deb-src stanza generated from the existing deb822 `deb` sources.
ensure_deb_src() {
  if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then return 0; fi
  [ -r /etc/apt/sources.list.d/debian.sources ] || die "no deb822 sources file to derive a deb-src stanza from"
  log "adding /etc/apt/sources.list.d/adaptest-deb-src.sources (deb-src twin of debian.sources)"
  sed -e 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > /etc/apt/sources.list.d/adaptest-deb-src.sources
  apt-get -o DPkg::Lock::Timeout=600 update -qq
}

# debian_source PKG: unpack Debian's source of PKG under $CACHE/src/PKG (once); prints its tree.
debian_source() {
  local d="$CACHE/src/$1" tree
  if [ ! -e "$d/.complete" ]; then
    rm -rf "$d" && mkdir -p "$d"
    log "apt-get source $1"
    (cd "$d" && apt-get source -qq "$1" >/dev/null 2>&1) || die "apt-get source $1 failed"
    touch "$d/.complete"
  fi
  tree=$(find "$d" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  [ -n "$tree" ] || die "no source tree in $d"
  echo "$tree"
}

build_loongarch() {
  exec 7>"$CACHE/.lock-loongarch64"
  flock 7
  apt_install qemu-user-static binfmt-support
  enable_binfmt loongarch64
  if current "$LOONG" "$LOONG_RECIPE"; then log "loongarch64 sysroot: cached"; echo "loongarch64-sysroot $LOONG"; return; fi
  local t0=$SECONDS tmp="$LOONG.tmp" zig tools src
  apt_install dpkg-dev make gcc libc6-dev tcl autotools-dev
  zig=$(ensure_zig)
  ensure_deb_src

  # A C compiler for loongarch64: zig cc, static musl, LA464 with LSX/LASX (QEMU 7.2 lacks the
  # default CPU's features; `generic_la64` silently goes soft-float). Build systems pass host
  # flags (--target, -m64, -march) and GNU-ld-only options (busybox) that must not reach zig.
  tools="$CACHE/tools"
  mkdir -p "$tools"
  cat > "$tools/loongarch64-cc" <<EOF
#!/bin/sh
for a; do shift; case \$a in
  --target=*|-m64|-march=*|-mtune=*) ;;
  -Wl,--warn-common|-Wl,--sort-common|-Wl,--sort-section,*|-Wl,-Map,*|-Wl,--verbose) ;; # GNU ld only
  *) set -- "\$@" "\$a" ;;
esac; done
exec "$zig" cc -target loongarch64-linux-musl -mcpu=la464-lsx-lasx "\$@"
EOF
  printf '#!/bin/sh\nexec "%s" ar "$@"\n' "$zig" > "$tools/loongarch64-ar"
  printf '#!/bin/sh\nexec "%s" ranlib "$@"\n' "$zig" > "$tools/loongarch64-ranlib"
  chmod 755 "$tools"/loongarch64-*
  local CC="$tools/loongarch64-cc" AR="$tools/loongarch64-ar" RANLIB="$tools/loongarch64-ranlib"
  local jobs
  jobs=$(nproc)

  safe_rm "$tmp"
  mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,run,proc,sys,dev,var/tmp,usr/share}
  chmod 1777 "$tmp/tmp" "$tmp/var/tmp"

  # SQLite shell: the amalgamation from Debian's source, then one zig cc.
  src=$(debian_source sqlite3)
  if [ ! -e "$src/sqlite3.c" ] || [ ! -e "$src/shell.c" ]; then
    log "sqlite3: configure + amalgamation"
    (cd "$src" && ./configure --disable-tcl >/dev/null && make -j"$jobs" sqlite3.c shell.c >/dev/null) || die "sqlite3 amalgamation failed"
  fi
  # HAVE_USLEEP: without it SQLite's busy handler sleeps whole seconds (concurrent clients crawl).
  local sqlite_bin="$src/sqlite3.loongarch64-r$LOONG_RECIPE"
  if [ ! -e "$sqlite_bin" ]; then
    log "sqlite3: zig cc (the first zig build for a target also builds musl: ~1 min)"
    "$CC" -static -O2 -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -DHAVE_USLEEP=1 \
      -DHAVE_FDATASYNC=1 -DHAVE_LOCALTIME_R=1 -DHAVE_GMTIME_R=1 -I"$src" \
      "$src/shell.c" "$src/sqlite3.c" -o "$sqlite_bin.tmp" || die "sqlite3 build failed"
    mv "$sqlite_bin.tmp" "$sqlite_bin"
  fi
  install -m 755 "$sqlite_bin" "$tmp/usr/bin/sqlite3"

  # Redis: Debian's source, bundled deps, libc malloc, no TLS/systemd.
  src=$(debian_source redis)
  log "redis: make redis-server redis-cli redis-benchmark"
  local redis_make=(MALLOC=libc CC="$CC" AR="$AR" RANLIB="$RANLIB" uname_S=Linux uname_M=loongarch64
    BUILD_TLS=no USE_SYSTEMD=no LDFLAGS=-static)
  # The bundled deps first (serially: with several goals at once, a link can race their build).
  (cd "$src" && make "${redis_make[@]}" .make-prerequisites >"$CACHE/redis-build.log" 2>&1 &&
    make -j"$jobs" "${redis_make[@]}" redis-server redis-cli redis-benchmark >>"$CACHE/redis-build.log" 2>&1) ||
    die "redis build failed, see $CACHE/redis-build.log"
  install -m 755 "$src/src/redis-server" "$src/src/redis-cli" "$src/src/redis-benchmark" "$tmp/usr/bin/"

  # busybox: the shell and the userland. Debian's source, defconfig, static; applets that need
  # what musl or current kernel headers lack are switched off.
  src=$(debian_source busybox)
  [ -e "$src/busybox" ] && grep -q '^CONFIG_STATIC=y' "$src/.config" 2>/dev/null || (
    log "busybox: make (static, musl)"
    cd "$src"
    make -s distclean >/dev/null 2>&1 || true
    make -s defconfig HOSTCC=gcc >/dev/null
    for opt in STATIC; do sed -i "s/^# CONFIG_$opt is not set$/CONFIG_$opt=y/" .config; done
    for opt in TC FEATURE_TC_INGRESS SELINUX PAM FEATURE_HAVE_RPC FEATURE_INETD_RPC FEATURE_MOUNT_NFS \
      FEATURE_SYSTEMD FEATURE_UTMP FEATURE_WTMP; do
      sed -i "s/^CONFIG_$opt=y$/# CONFIG_$opt is not set/" .config
    done
    yes '' | make -s oldconfig HOSTCC=gcc >/dev/null
    make -j"$jobs" HOSTCC=gcc CC="$CC" AR="$AR" SKIP_STRIP=y busybox >"$CACHE/busybox-build.log" 2>&1
  ) || die "busybox build failed, see $CACHE/busybox-build.log"
  install -m 755 "$src/busybox" "$tmp/bin/busybox"
  # Applet links (`busybox --list-full` run under emulation), relative to the sysroot.
  local applet rel
  "qemu-loongarch64-static" "$tmp/bin/busybox" --list-full | while read -r applet; do
    # Relative links, so the sysroot is also right when seen from the host (qemu -L mode).
    case $applet in
      bin/*) rel=busybox ;;
      sbin/*) rel=../bin/busybox ;;
      *) rel=../../bin/busybox ;;
    esac
    [ -e "$tmp/$applet" ] || [ -L "$tmp/$applet" ] || ln -s "$rel" "$tmp/$applet"
  done
  [ -e "$tmp/bin/sh" ] || ln -s busybox "$tmp/bin/sh"

  # awk: busybox's awk built this way dies with SIGSEGV at start-up under qemu-loongarch64 7.2
  # (at -O0, -O1 and -Os alike; the same source built by zig for x86_64 works; whether the
  # emulator or the compiler is at fault is not established). The sysroot's awk is therefore
  # mawk (Debian's default awk), also from Debian's source; its old config.sub predates
  # LoongArch, so the system's is used.
  src=$(debian_source mawk)
  if [ ! -e "$src/mawk" ]; then
    log "mawk: configure + make"
    cp /usr/share/misc/config.sub /usr/share/misc/config.guess "$src/"
    (cd "$src" && ./configure --host=loongarch64-linux-musl CC="$CC" CFLAGS=-O2 LDFLAGS=-static &&
      make -j"$jobs") >"$CACHE/mawk-build.log" 2>&1 || die "mawk build failed, see $CACHE/mawk-build.log"
  fi
  install -m 755 "$src/mawk" "$tmp/usr/bin/mawk"
  ln -sf mawk "$tmp/usr/bin/awk"

  # Data files (no code): identity, users, hosts, time zones (tzdata is architecture-independent).
  local bbver
  bbver=$(qemu-loongarch64-static "$tmp/bin/busybox" --help 2>&1 | sed -n '1s/^BusyBox v\([0-9.]*\).*/\1/p' || true)
  cat > "$tmp/etc/os-release" <<EOF
ID=adaptest-sysroot
NAME="adaptest LoongArch64 sysroot"
VERSION_ID=1
PRETTY_NAME="adaptest loongarch64 sysroot (busybox ${bbver:-?}, musl, static; built from Debian 12 sources)"
EOF
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tmp/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$tmp/etc/group"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$tmp/etc/hosts"
  [ -d /usr/share/zoneinfo ] || apt_install tzdata
  cp -a /usr/share/zoneinfo "$tmp/usr/share/"
  ln -sf /usr/share/zoneinfo/Etc/UTC "$tmp/etc/localtime"

  # Every program in the sysroot must be a static LoongArch ELF (e_machine 258).
  local f
  for f in "$tmp/bin/busybox" "$tmp"/usr/bin/mawk "$tmp"/usr/bin/sqlite3 "$tmp"/usr/bin/redis-*; do
    [ "$(od -An -tu1 -j18 -N2 "$f" | awk '{print $1 + 256 * $2}')" = 258 ] || die "$f is not a LoongArch ELF"
  done
  printf 'recipe %s\nloongarch64-sysroot built %s by scripts/build-payloads.sh (zig %s)\n' "$LOONG_RECIPE" "$(date -u +%FT%TZ)" "$ZIG_VERSION" > "$tmp/$MARK"
  retire "$LOONG"
  mv "$tmp" "$LOONG"
  log "loongarch64 sysroot: built in $((SECONDS - t0)) s"
  echo "loongarch64-sysroot $LOONG"
}

# --- main ----------------------------------------------------------------------------------

[ "$#" -gt 0 ] || set -- all
for what in "$@"; do
  case $what in
    all) build_arm64; build_loongarch ;;
    aarch64|arm64) build_arm64 ;;
    loongarch64|loong64) build_loongarch ;;
    *) die "unknown payload '$what' (all, aarch64, loongarch64)" ;;
  esac
done
