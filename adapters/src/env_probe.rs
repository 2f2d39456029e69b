//! The environment probe: one POSIX `/bin/sh` script run the same way on every target kind, and
//! the parser that turns its `key=value` output into an [`Environment`].
//!
//! The script needs only a shell and coreutils or busybox (no bash, no python), never fails as a
//! whole (a fact it cannot find is left out), and prints one `key=value` line per fact, every value
//! on a single line. Keys the parser does not know, and `extra.*` keys, go to
//! [`Environment::extra`] so the evidence keeps them.

use adaptest_reports::Environment;

/// The probe script, passed to `/bin/sh -c` (or fed to `sh -s`) on the target.
///
/// Keys: `arch`, `kernel`, `hostname`, `os_id`, `os_version`, `os_name`, `libc`, `cpu_model`,
/// `cpu_vendor`, `cores`, `memory_bytes` (and `memory_kb`, used when the shell's arithmetic is too
/// narrow for bytes), `page_size`, and `extra.*`.
pub const PROBE_SCRIPT: &str = r##"
# adaptest environment probe: POSIX sh with coreutils or busybox only.
adaptest_locale=${LC_ALL:-${LC_CTYPE:-${LANG:-}}}
LC_ALL=C
export LC_ALL
PATH=$PATH:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PATH

# kv KEY VALUE: print one line; CRs dropped, newlines and tabs folded to spaces, ends trimmed.
kv() {
    printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr -d '\r' | tr '\n\t' '  ' | sed -e 's/^  *//' -e 's/  *$//')"
}

# osr KEY: value of KEY in os-release, quotes removed.
osr=/etc/os-release
[ -r "$osr" ] || osr=/usr/lib/os-release
osr() {
    [ -r "$osr" ] || return 0
    sed -n "s/^$1=//p" "$osr" | head -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}

# ci FIELD: first value of FIELD in /proc/cpuinfo (tests point ADAPTEST_CPUINFO elsewhere).
cpuinfo=${ADAPTEST_CPUINFO:-/proc/cpuinfo}
ci() {
    [ -r "$cpuinfo" ] || return 0
    sed -n "s/^$1[[:space:]]*:[[:space:]]*//p" "$cpuinfo" | head -n 1
}

kv extra.probe_version 1
kv arch "$(uname -m 2>/dev/null)"
kv kernel "$(uname -r 2>/dev/null)"
kv extra.kernel_build "$(uname -v 2>/dev/null)"
kv hostname "$(uname -n 2>/dev/null)"

os_id=$(osr ID)
os_version=$(osr VERSION_ID)
os_name=$(osr PRETTY_NAME)
if [ -z "$os_name" ] && [ -r /etc/redhat-release ]; then
    os_name=$(head -n 1 /etc/redhat-release)
fi
if [ -z "$os_version" ] && [ -r /etc/debian_version ]; then
    os_version=$(head -n 1 /etc/debian_version)
fi
kv os_id "$os_id"
kv os_version "$os_version"
kv os_name "$os_name"

libc=$(getconf GNU_LIBC_VERSION 2>/dev/null)
if [ -z "$libc" ]; then
    ldd_out=$(ldd --version 2>&1)
    ldd_first=$(printf '%s\n' "$ldd_out" | head -n 1)
    case $ldd_out in
    *musl*)
        libc=musl
        kv extra.libc_version "$(printf '%s\n' "$ldd_out" | sed -n 's/^Version[[:space:]]*//p' | head -n 1)"
        ;;
    *GLIBC*|*glibc*|*"GNU libc"*|*"GNU C Library"*)
        ver=$(printf '%s\n' "$ldd_first" | sed -n 's/.*[^0-9.]\([0-9][0-9]*\.[0-9][0-9.]*\)[^0-9]*$/\1/p')
        libc="glibc${ver:+ $ver}"
        ;;
    esac
fi
if [ -z "$libc" ]; then
    # No getconf or ldd (busybox): glibc's libc.so.6 prints its version when executed.
    for f in /lib/*/libc.so.6 /lib64/libc.so.6 /lib/libc.so.6 /usr/lib/*/libc.so.6 /usr/lib64/libc.so.6; do
        [ -x "$f" ] || continue
        ver=$("$f" 2>/dev/null | sed -n 's/.*release version \([0-9][0-9.]*[0-9]\).*/\1/p' | head -n 1)
        if [ -n "$ver" ]; then libc="glibc $ver"; break; fi
    done
fi
if [ -z "$libc" ]; then
    for f in /lib/ld-musl-*.so.1 /usr/lib/ld-musl-*.so.1; do
        if [ -e "$f" ]; then libc=musl; break; fi
    done
fi
kv libc "$libc"

model=$(ci 'model name')
[ -n "$model" ] || model=$(ci 'Model Name')
[ -n "$model" ] || model=$(ci 'cpu model')
[ -n "$model" ] || model=$(ci 'uarch')
[ -n "$model" ] || model=$(ci 'cpu')
vendor=$(ci vendor_id)
[ -n "$vendor" ] || vendor=$(ci vendor)
case $vendor in
GenuineIntel) vendor=Intel ;;
AuthenticAMD) vendor=AMD ;;
HygonGenuine) vendor=Hygon ;;
CentaurHauls) vendor=Centaur ;;
*Shanghai*) vendor=Zhaoxin ;;
IBM/S390) vendor=IBM ;;
esac

impl=$(ci 'CPU implementer')
part=$(ci 'CPU part')
if [ -n "$impl" ]; then
    case $impl in
    0x41) vendor=Arm ;;
    0x42) vendor=Broadcom ;;
    0x43) vendor=Cavium ;;
    0x46) vendor=Fujitsu ;;
    0x48) vendor=HiSilicon ;;
    0x4e) vendor=NVIDIA ;;
    0x50) vendor=APM ;;
    0x51) vendor=Qualcomm ;;
    0x61) vendor=Apple ;;
    0x6d) vendor=Microsoft ;;
    0x70) vendor=Phytium ;;
    0xc0) vendor=Ampere ;;
    *) vendor="implementer $impl" ;;
    esac
    core=
    case $impl:$part in
    0x41:0xd03) core=Cortex-A53 ;;
    0x41:0xd04) core=Cortex-A35 ;;
    0x41:0xd05) core=Cortex-A55 ;;
    0x41:0xd07) core=Cortex-A57 ;;
    0x41:0xd08) core=Cortex-A72 ;;
    0x41:0xd09) core=Cortex-A73 ;;
    0x41:0xd0a) core=Cortex-A75 ;;
    0x41:0xd0b) core=Cortex-A76 ;;
    0x41:0xd0c) core=Neoverse-N1 ;;
    0x41:0xd0d) core=Cortex-A77 ;;
    0x41:0xd40) core=Neoverse-V1 ;;
    0x41:0xd41) core=Cortex-A78 ;;
    0x41:0xd49) core=Neoverse-N2 ;;
    0x41:0xd4f) core=Neoverse-V2 ;;
    0x48:0xd01) core="Kunpeng-920" ;;
    0x70:0x303|0x70:0x66?|0x70:0x862) core="FTC${part#0x}" ;;
    0xc0:0xac3) core=Ampere-1 ;;
    0xc0:0xac4) core=Ampere-1a ;;
    esac
    if [ -n "$core" ]; then
        model="$vendor $core"
    elif [ -z "$model" ] || [ "${model#ARMv}" != "$model" ]; then
        model="$vendor part ${part:-unknown}"
    fi
    kv extra.cpu_part "$impl:$part"
fi

family=$(ci 'CPU Family')
case $family$model in
*Loongson*) vendor=Loongson ;;
esac
if [ -z "$vendor" ]; then
    case $model in
    POWER*|*IBM*) vendor=IBM ;;
    *,*) vendor=${model%%,*} ;;
    esac
fi
kv cpu_model "$model"
kv cpu_vendor "$vendor"
kv extra.cpu_family "$family"

cores=$(nproc 2>/dev/null)
[ -n "$cores" ] || cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null)
[ -n "$cores" ] || cores=$(grep -c '^processor' "$cpuinfo" 2>/dev/null)
kv cores "$cores"

kb=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9][0-9]*\).*/\1/p' /proc/meminfo 2>/dev/null | head -n 1)
if [ -n "$kb" ]; then
    kv memory_kb "$kb"
    bytes=$((kb * 1024))
    # Only when the shell's arithmetic did not overflow (32-bit shells).
    if [ "$((bytes / 1024))" = "$kb" ]; then kv memory_bytes "$bytes"; fi
fi

page=$(getconf PAGESIZE 2>/dev/null || getconf PAGE_SIZE 2>/dev/null)
if [ -z "$page" ]; then
    k=$(sed -n 's/^KernelPageSize:[[:space:]]*\([0-9][0-9]*\) kB.*/\1/p' /proc/self/smaps 2>/dev/null | head -n 1)
    if [ -n "$k" ]; then page=$((k * 1024)); fi
fi
kv page_size "$page"

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cgroup=v2
    cg_path=$(sed -n 's/^0:://p' /proc/self/cgroup 2>/dev/null | head -n 1)
    if [ -r "/sys/fs/cgroup$cg_path/memory.max" ]; then
        kv extra.cgroup_memory_max "$(head -n 1 "/sys/fs/cgroup$cg_path/memory.max")"
    fi
elif grep -q ' cgroup ' /proc/mounts 2>/dev/null; then
    cgroup=v1
else
    cgroup=none
fi
kv extra.cgroup "$cgroup"

tz=${TZ:-}
if [ -z "$tz" ] && [ -r /etc/timezone ]; then tz=$(head -n 1 /etc/timezone); fi
[ -n "$tz" ] || tz=$(readlink /etc/localtime 2>/dev/null | sed 's|.*zoneinfo/||')
[ -n "$tz" ] || tz=$(date +%Z 2>/dev/null)
kv extra.timezone "$tz"
kv extra.locale "${adaptest_locale:-POSIX}"
kv extra.sh "$(readlink -f /bin/sh 2>/dev/null || echo /bin/sh)"

virt=$(systemd-detect-virt -v 2>/dev/null)
if [ -z "$virt" ] && grep -q '^flags.* hypervisor' "$cpuinfo" 2>/dev/null; then virt=vm; fi
kv extra.virt "$virt"
container=$(systemd-detect-virt -c 2>/dev/null)
if [ -z "$container" ]; then
    if [ -f /.dockerenv ]; then container=docker
    elif [ -f /run/.containerenv ]; then container=podman
    fi
fi
kv extra.container "$container"
if [ -r /sys/devices/virtual/dmi/id/product_name ]; then
    kv extra.dmi_vendor "$(head -n 1 /sys/devices/virtual/dmi/id/sys_vendor 2>/dev/null)"
    kv extra.dmi_product "$(head -n 1 /sys/devices/virtual/dmi/id/product_name 2>/dev/null)"
fi
if [ -r /proc/device-tree/model ]; then
    kv extra.dt_model "$(tr -d '\000' < /proc/device-tree/model)"
fi
exit 0
"##;

/// Turn the probe's output into an [`Environment`] for `target` of kind `target_kind`.
///
/// Tolerant by design: lines without `=`, keys that are not plain identifiers, empty values and
/// numbers that do not parse are ignored; a missing key leaves its field empty (or 0). A later
/// line for the same key wins. `extra.NAME` keys, and unknown keys, land in
/// [`Environment::extra`] (the former without the `extra.` prefix).
pub fn parse_probe(target: &str, target_kind: &str, output: &str) -> Environment {
    let mut env = Environment {
        target: target.to_owned(),
        target_kind: target_kind.to_owned(),
        ..Environment::default()
    };
    let mut memory_kb = None;
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() || !is_key(key) {
            continue;
        }
        let text = || value.to_owned();
        match key {
            "arch" => env.arch = text(),
            "kernel" => env.kernel = text(),
            "hostname" => env.hostname = text(),
            "os_id" => env.os_id = text(),
            "os_version" => env.os_version = text(),
            "os_name" => env.os_name = text(),
            "libc" => env.libc = text(),
            "cpu_model" => env.cpu_model = text(),
            "cpu_vendor" => env.cpu_vendor = text(),
            "cores" => set_number(&mut env.cores, value),
            "memory_bytes" => set_number(&mut env.memory_bytes, value),
            "memory_kb" => memory_kb = value.parse::<u64>().ok().or(memory_kb),
            "page_size" => set_number(&mut env.page_size, value),
            _ => {
                let name = key.strip_prefix("extra.").unwrap_or(key);
                if !name.is_empty() {
                    env.extra.insert(name.to_owned(), text());
                }
            }
        }
    }
    if env.memory_bytes == 0 {
        env.memory_bytes = memory_kb.map_or(0, |kb| kb.saturating_mul(1024));
    }
    env
}

/// A probe key: ASCII letters, digits, `_`, `.` and `-`, starting with a letter, at most 64 long.
fn is_key(key: &str) -> bool {
    key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn set_number<T: std::str::FromStr>(field: &mut T, value: &str) {
    if let Ok(n) = value.parse() {
        *field = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_X86: &str = "\
extra.probe_version=1
arch=x86_64
kernel=6.1.0-25-amd64
extra.kernel_build=#1 SMP PREEMPT_DYNAMIC Debian 6.1.106-3 (2024-08-26)
hostname=build-01
os_id=debian
os_version=12
os_name=Debian GNU/Linux 12 (bookworm)
libc=glibc 2.36
cpu_model=AMD EPYC 7763 64-Core Processor
cpu_vendor=AMD
extra.cpu_family=
cores=2
memory_kb=25165824
memory_bytes=25769803776
page_size=4096
extra.cgroup=v2
extra.cgroup_memory_max=max
extra.timezone=Etc/UTC
extra.locale=C.UTF-8
extra.sh=/usr/bin/dash
extra.virt=kvm
extra.container=
";

    const KUNPENG: &str = "\
arch=aarch64
kernel=4.19.90-52.22.v2207.ky10.aarch64
hostname=kunpeng-lab
os_id=kylin
os_version=V10
os_name=Kylin Linux Advanced Server V10 (Lance)
libc=glibc 2.28
extra.cpu_part=0x48:0xd01
cpu_model=HiSilicon Kunpeng-920
cpu_vendor=HiSilicon
cores=96
memory_bytes=549755813888
page_size=65536
extra.cgroup=v1
";

    const BUSYBOX: &str = "\
sh: getconf: not found
arch=armv7l
kernel=5.15.0
hostname=
os_id=alpine
os_version=3.20.3
os_name=Alpine Linux v3.20
libc=musl
extra.libc_version=1.2.5
cpu_model=ARMv7 Processor rev 4 (v7l)
cores=4
memory_kb=999999
page_size=
extra.cgroup=none
";

    #[test]
    fn parses_debian_x86() {
        let env = parse_probe("host", "local", DEBIAN_X86);
        assert_eq!(env.target, "host");
        assert_eq!(env.target_kind, "local");
        assert_eq!(env.arch, "x86_64");
        assert_eq!(env.kernel, "6.1.0-25-amd64");
        assert_eq!(env.hostname, "build-01");
        assert_eq!(env.os_id, "debian");
        assert_eq!(env.os_version, "12");
        assert_eq!(env.os_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(env.libc, "glibc 2.36");
        assert_eq!(env.cpu_model, "AMD EPYC 7763 64-Core Processor");
        assert_eq!(env.cpu_vendor, "AMD");
        assert_eq!(env.cores, 2);
        assert_eq!(env.memory_bytes, 25_769_803_776);
        assert_eq!(env.page_size, 4096);
        assert_eq!(env.extra["cgroup"], "v2");
        assert_eq!(env.extra["timezone"], "Etc/UTC");
        assert_eq!(env.extra["probe_version"], "1");
        // `=` inside a value is kept; empty values are not stored.
        assert_eq!(
            env.extra["kernel_build"],
            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.106-3 (2024-08-26)"
        );
        assert!(!env.extra.contains_key("container"));
        assert!(!env.extra.contains_key("cpu_family"));
        assert!(!env.extra.contains_key("memory_kb"));
        assert!(env.components.is_empty());
    }

    #[test]
    fn parses_aarch64_kunpeng() {
        let env = parse_probe("kp", "ssh", KUNPENG);
        assert_eq!(env.target_kind, "ssh");
        assert_eq!(env.arch, "aarch64");
        assert_eq!(env.cpu_vendor, "HiSilicon");
        assert_eq!(env.cpu_model, "HiSilicon Kunpeng-920");
        assert_eq!(env.cores, 96);
        assert_eq!(env.memory_bytes, 512 << 30);
        assert_eq!(env.page_size, 65536);
        assert_eq!(env.os_id, "kylin");
        assert_eq!(env.extra["cpu_part"], "0x48:0xd01");
        assert_eq!(env.extra["cgroup"], "v1");
    }

    #[test]
    fn parses_busybox_with_missing_fields_and_junk() {
        let env = parse_probe("bb", "qemu-system", BUSYBOX);
        assert_eq!(env.arch, "armv7l");
        assert_eq!(env.libc, "musl");
        assert_eq!(env.extra["libc_version"], "1.2.5");
        assert_eq!(env.hostname, "");
        assert_eq!(env.cpu_vendor, "");
        assert_eq!(env.page_size, 0);
        // memory_bytes missing: derived from memory_kb.
        assert_eq!(env.memory_bytes, 999_999 * 1024);
        // The junk line has no `=`; nothing odd was stored.
        assert_eq!(env.extra.len(), 2, "{:?}", env.extra);
    }

    #[test]
    fn ignores_junk_and_bad_numbers() {
        let env = parse_probe(
            "t",
            "local",
            "garbage\n=novalue\nnot a key=1\ncores=many\nmemory_bytes=-5\r\n\
             arch=riscv64\r\nweird_key=kept\nextra.=dropped\n",
        );
        assert_eq!(env.arch, "riscv64");
        assert_eq!(env.cores, 0);
        assert_eq!(env.memory_bytes, 0);
        assert_eq!(env.extra.len(), 1, "{:?}", env.extra);
        assert_eq!(env.extra["weird_key"], "kept");
        assert_eq!(parse_probe("t", "local", ""), {
            Environment {
                target: "t".into(),
                target_kind: "local".into(),
                ..Environment::default()
            }
        });
    }

    /// The script itself, run by this machine's `/bin/sh`: every line is `key=value`.
    #[test]
    fn script_prints_only_single_line_key_values() {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(PROBE_SCRIPT)
            .output()
            .expect("run /bin/sh");
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        for line in text.lines() {
            let (key, _) = line.split_once('=').expect("key=value");
            assert!(is_key(key), "{line}");
        }
        let env = parse_probe("t", "local", &text);
        assert!(!env.arch.is_empty() && !env.kernel.is_empty());
        assert!(env.cores >= 1 && env.memory_bytes > 0 && env.page_size > 0);
    }

    /// Run the script with `cpuinfo` in place of `/proc/cpuinfo`; return (cpu_model, cpu_vendor).
    fn cpu_from(cpuinfo: &str) -> (String, String) {
        let path = std::env::temp_dir().join(format!(
            "adaptest-cpuinfo-{}-{}",
            std::process::id(),
            cpuinfo.len()
        ));
        std::fs::write(&path, cpuinfo).expect("write cpuinfo");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(PROBE_SCRIPT)
            .env("ADAPTEST_CPUINFO", &path)
            .output()
            .expect("run /bin/sh");
        std::fs::remove_file(&path).expect("rm cpuinfo");
        let env = parse_probe("t", "local", &String::from_utf8_lossy(&out.stdout));
        (env.cpu_model, env.cpu_vendor)
    }

    #[test]
    fn script_names_cpus() {
        let kunpeng = "processor\t: 0\nBogoMIPS\t: 200.00\nFeatures\t: fp asimd\n\
                       CPU implementer\t: 0x48\nCPU architecture: 8\nCPU variant\t: 0x1\n\
                       CPU part\t: 0xd01\nCPU revision\t: 0\n\n";
        assert_eq!(
            cpu_from(kunpeng),
            ("HiSilicon Kunpeng-920".into(), "HiSilicon".into())
        );
        let phytium = "processor\t: 0\nCPU implementer\t: 0x70\nCPU part\t: 0x663\n";
        assert_eq!(
            cpu_from(phytium),
            ("Phytium FTC663".into(), "Phytium".into())
        );
        let n1 = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        assert_eq!(cpu_from(n1), ("Arm Neoverse-N1".into(), "Arm".into()));
        let unknown = "processor\t: 0\nCPU implementer\t: 0x48\nCPU part\t: 0xd02\n";
        assert_eq!(
            cpu_from(unknown),
            ("HiSilicon part 0xd02".into(), "HiSilicon".into())
        );
        let loongson = "system type\t\t: generic-loongson-machine\nprocessor\t\t: 0\n\
                        CPU Family\t\t: Loongson-64bit\nModel Name\t\t: Loongson-3A5000\n";
        assert_eq!(
            cpu_from(loongson),
            ("Loongson-3A5000".into(), "Loongson".into())
        );
        let intel = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
                     model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\n";
        assert_eq!(
            cpu_from(intel),
            (
                "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz".into(),
                "Intel".into()
            )
        );
        let hygon = "processor\t: 0\nvendor_id\t: HygonGenuine\nmodel name\t: Hygon C86 7185 32-core Processor\n";
        assert_eq!(cpu_from(hygon).1, "Hygon");
    }

    /// The same under busybox `sh` with busybox applets only, when busybox is installed.
    #[test]
    fn script_runs_under_busybox() {
        let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| p.exists())
        else {
            eprintln!("busybox not installed: skipped");
            return;
        };
        let dir = std::env::temp_dir().join(format!("adaptest-bb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        // Only busybox applets on PATH: drop the line that appends the system directories.
        let script = PROBE_SCRIPT.replace(
            "PATH=$PATH:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "PATH=$PATH",
        );
        assert_ne!(
            script, PROBE_SCRIPT,
            "the PATH line moved: update this test"
        );
        let install = "\"$0\" --install -s \"$1\" && PATH=\"$1\" exec \"$0\" sh -c \"$2\"";
        let out = std::process::Command::new(busybox)
            .args(["sh", "-c", install])
            .arg(busybox)
            .arg(&dir)
            .arg(script)
            .output()
            .expect("run busybox");
        std::fs::remove_dir_all(&dir).expect("rmdir");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let env = parse_probe("t", "local", &text);
        assert!(!env.arch.is_empty(), "{text}");
        assert!(env.cores >= 1, "{text}");
        assert!(env.memory_bytes > 0, "{text}");
        assert!(env.page_size > 0, "{text}");
        assert!(!env.cpu_model.is_empty(), "{text}");
    }
}
