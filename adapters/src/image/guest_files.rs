//! The files an image build writes into the guest: the initramfs `/init`, the root file
//! system's `/sbin/adaptest-init`, its `/etc/inittab` and the sshd settings.
//!
//! Boot protocol (shared with `target::qemu_system`): the kernel command line carries
//! `adaptest.root=disk` (ext4 on `/dev/vda`, the default) or `adaptest.root=9p` (the read-only
//! 9p export tagged `rootfs`, under a tmpfs overlay so the image never changes).

/// The initramfs `/init` (busybox sh): modules, network, root, `switch_root`.
pub(crate) const INITRAMFS_INIT: &str = r#"#!/bin/busybox sh
# adaptest initramfs: load the modules listed in /lib/modules/order, configure eth0 for QEMU
# user networking, mount the root (ext4 disk or 9p export under a tmpfs overlay), switch_root.
/bin/busybox mkdir -p /proc /sys /dev /newroot /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say() { echo "adaptest-initramfs: $*"; }
die() { say "FATAL: $*"; sleep 1; poweroff -f; }

root=disk
for a in $(cat /proc/cmdline); do
    case $a in
    adaptest.root=*) root=${a#adaptest.root=} ;;
    esac
done

while read -r m; do
    insmod "/lib/modules/$m" || say "insmod $m failed"
done < /lib/modules/order

ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; then
    say "eth0 10.0.2.15/24 via 10.0.2.2"
else
    say "eth0 setup failed"
fi

case $root in
9p)
    mkdir -p /ro /rw
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro rootfs /ro || die "cannot mount the 9p root"
    mount -t tmpfs -o mode=755 tmpfs /rw || die "cannot mount the overlay's tmpfs"
    mkdir -p /rw/upper /rw/work
    mount -t overlay overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work /newroot ||
        die "cannot mount the overlay root"
    ;;
*)
    dev=/dev/vda
    [ "$root" = disk ] || dev=$root
    i=0
    while [ ! -b "$dev" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    mount -t ext4 -o rw "$dev" /newroot || die "cannot mount $dev"
    ;;
esac
say "root ($root) mounted"
[ -x /newroot/sbin/adaptest-init ] || die "/sbin/adaptest-init is missing in the root file system"
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /sbin/adaptest-init
"#;

/// The root file system's first process: mounts, then busybox init (which reaps orphans and
/// keeps sshd running, see [`INITTAB`]).
pub(crate) const GUEST_INIT: &str = r#"#!/bin/sh
# adaptest guest init (written by `adaptest image build`): mount the kernel file systems, then
# hand over to busybox init, which runs sshd from /etc/inittab and reaps orphans.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
bb=/bin/busybox
mount -t proc proc /proc 2>/dev/null
mounted() { grep -q "^[^ ]* $1 " /proc/mounts; }
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=000 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mkdir -p /run/sshd /run/lock
chmod 1777 /run/lock
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
$bb hostname -F /etc/hostname
echo "adaptest: guest init done, starting sshd"
exec $bb init
"#;

/// busybox init's table: sshd in the foreground, respawned if it dies. Its log goes to a file
/// (the harness's readiness probes would fill the console); if it exits, the reason is copied
/// to the console, where boot errors are read from. `-r` (no re-exec per connection, where
/// this sshd still has it) saves a process start per login, which is slow under emulation.
pub(crate) const INITTAB: &str = "\
# Written by `adaptest image build`.
::sysinit:/bin/busybox echo adaptest: busybox init
::respawn:/bin/sh -c 'r=; /usr/sbin/sshd -t -r 2>/dev/null && r=-r; /usr/sbin/sshd -D $r -E /var/log/sshd.log; echo \"adaptest: sshd exited with status $?:\"; tail -n 5 /var/log/sshd.log; sleep 2'
::shutdown:/bin/busybox sync
::shutdown:/bin/busybox umount -a -r
";

/// sshd settings (Debian's sshd_config includes `sshd_config.d/*.conf` first). No PAM and a
/// classic key exchange: each saves a noticeable part of a login under emulation (the harness
/// logs in once per guest start; commands are channels on that connection).
pub(crate) const SSHD_CONFIG: &str = "\
# Written by `adaptest image build`: key-only root login for the harness.
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM no
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 256
MaxStartups 100:30:200
PrintMotd no
PrintLastLog no
AllowTcpForwarding yes
";

pub(crate) const HOSTS: &str = "\
127.0.0.1\tlocalhost
127.0.1.1\tadaptest-guest
::1\tlocalhost ip6-localhost ip6-loopback
";

/// Modules the initramfs loads (with their dependencies, resolved by `modprobe --show-depends`).
/// The first group is required; the rest are loaded when the kernel has them.
pub(crate) const REQUIRED_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_net", "ext4"];
pub(crate) const OPTIONAL_MODULES: &[&str] = &[
    "crc32c_generic",
    "9pnet_virtio",
    "9p",
    "overlay",
    "virtio_rng",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script parses as POSIX sh (dash here; the guest runs busybox sh and dash).
    #[test]
    fn scripts_parse() {
        let respawn = INITTAB
            .lines()
            .find_map(|l| l.strip_prefix("::respawn:"))
            .expect("a respawn line");
        for (name, script) in [
            ("initramfs init", INITRAMFS_INIT),
            ("guest init", GUEST_INIT),
            ("inittab respawn", respawn),
        ] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-n")
                .arg("-c")
                .arg(script)
                .output()
                .expect("run /bin/sh");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn sshd_settings_allow_key_logins_only() {
        assert!(SSHD_CONFIG.contains("PasswordAuthentication no"));
        assert!(SSHD_CONFIG.contains("PermitRootLogin prohibit-password"));
        assert!(INITTAB.contains("/usr/sbin/sshd -D $r -E /var/log/sshd.log"));
    }
}
