//! The environment probe: one POSIX `/bin/sh` script run the same way on every target kind, and
//! the parser that turns its `key=value` output into an [`Environment`].
//!
//! The script needs only a shell and coreutils or busybox (no bash, no python), never fails as a
//! whole (a fact it cannot find is left out), and prints one `key=value` line per fact, every value
//! on a single line. Keys the parser does not know, and `extra.*` keys, go to
//! [`Environment::extra`] so the evidence keeps them.
//!
//! (long because the probe script and its parser are one contract, kept in one place with the ~300 lines of tests that pin its output format)

use std::collections::BTreeMap;
use std::time::Duration;

use crate::target::{ExecOutput, ExecRequest, TargetError};
use adaptest_schema::Environment;

/// How long the probe may take: it forks a handful of programs, each slow on an emulated
/// target right after a boot or restore.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// The request that runs [`PROBE_SCRIPT`] through a target's own exec.
pub fn probe_request() -> ExecRequest {
    ExecRequest::new(PROBE_SCRIPT, PROBE_TIMEOUT)
}

/// The [`Environment`] of `target` (of kind `target_kind`) from its run of [`probe_request`];
/// an error saying how the probe failed when it did not exit 0 with output.
pub fn environment_from(
    target: &str,
    target_kind: &str,
    out: &ExecOutput,
) -> Result<Environment, TargetError> {
    if out.timed_out || out.exit_code != Some(0) || out.stdout.is_empty() {
        return Err(TargetError::Environment {
            target: target.to_owned(),
            reason: format!(
                "the probe failed (exit {:?}, signal {:?}, timed out: {}): {}",
                out.exit_code,
                out.signal,
                out.timed_out,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(parse_probe(
        target,
        target_kind,
        &String::from_utf8_lossy(&out.stdout),
    ))
}

/// The probe script, passed to `/bin/sh -c` (or fed to `sh -s`) on the target.
///
/// Keys: `arch`, `kernel`, `hostname`, `os_id`, `os_version`, `os_name`, `libc`, `cpu_model`,
/// `cpu_vendor`, `cores`, `memory_bytes` (and `memory_kb`, used when the shell's arithmetic is too
/// narrow for bytes), `page_size`, and `extra.*`.
pub const PROBE_SCRIPT: &str = r##"
# adaptest environment probe v2: POSIX sh with coreutils or busybox only. It prints raw facts and
# leaves naming (CPU vendors, quoting, ranges) to the harness, so it forks only a handful of
# programs: each fork costs 50-200 ms on an emulated guest.
adaptest_locale=${LC_ALL:-${LC_CTYPE:-${LANG:-}}}
LC_ALL=C
export LC_ALL
PATH=$PATH:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PATH

kv() { printf '%s=%s\n' "$1" "$2"; }
# line FILE: v = the first line of FILE ('' when unreadable), with the shell's own `read`.
line() {
    v=
    [ -r "$1" ] || return 0
    IFS= read -r v < "$1" 2>/dev/null || :
}
kv extra.probe_version 3

kv arch "$(uname -m 2>/dev/null)"
line /proc/sys/kernel/osrelease; [ -n "$v" ] || v=$(uname -r 2>/dev/null); kv kernel "$v"
line /proc/sys/kernel/version; [ -n "$v" ] || v=$(uname -v 2>/dev/null); kv extra.kernel_build "$v"
line /proc/sys/kernel/hostname; [ -n "$v" ] || v=$(uname -n 2>/dev/null); kv hostname "$v"

for f in /etc/os-release /usr/lib/os-release; do
    [ -r "$f" ] || continue
    while IFS='=' read -r k v || [ -n "$k" ]; do
        case $k in ID|ID_LIKE|VERSION_ID|PRETTY_NAME) kv "raw.os_release.$k" "$v" ;; esac
        k=
    done < "$f"
    break
done
line /etc/debian_version; kv raw.debian_version "$v"
line /etc/redhat-release; kv raw.redhat_release "$v"

libc=$(getconf GNU_LIBC_VERSION 2>/dev/null)
if [ -z "$libc" ]; then
    ldd_out=$(ldd --version 2>&1)
    case $ldd_out in
    *musl*)
        libc=musl
        kv extra.libc_version "$(printf '%s\n' "$ldd_out" | sed -n 's/^Version[[:space:]]*//p' | head -n 1)"
        ;;
    *GLIBC*|*glibc*|*"GNU libc"*|*"GNU C Library"*)
        kv raw.ldd_version "$(printf '%s\n' "$ldd_out" | head -n 1)"
        libc=glibc
        ;;
    esac
fi
if [ -z "$libc" ]; then
    # No getconf or ldd (busybox): glibc's libc.so.6 prints its version when executed.
    for f in /lib/*/libc.so.6 /lib64/libc.so.6 /lib/libc.so.6 /usr/lib/*/libc.so.6 /usr/lib64/libc.so.6; do
        [ -x "$f" ] || continue
        libc=$("$f" 2>/dev/null | sed -n 's/.*release version \([0-9][0-9.]*[0-9]\).*/glibc \1/p' | head -n 1)
        [ -z "$libc" ] || break
    done
fi
if [ -z "$libc" ]; then
    for f in /lib/ld-musl-*.so.1 /usr/lib/ld-musl-*.so.1; do
        if [ -e "$f" ]; then libc=musl; break; fi
    done
fi
kv libc "$libc"

# The CPU: one sed pass over cpuinfo (tests point ADAPTEST_CPUINFO elsewhere).
cpuinfo=${ADAPTEST_CPUINFO:-/proc/cpuinfo}
[ -r "$cpuinfo" ] && sed -n \
    -e 's/^model name[[:space:]]*:[[:space:]]*/raw.cpu.model_name=/p' \
    -e 's/^Model Name[[:space:]]*:[[:space:]]*/raw.cpu.model_name2=/p' \
    -e 's/^cpu model[[:space:]]*:[[:space:]]*/raw.cpu.cpu_model=/p' \
    -e 's/^uarch[[:space:]]*:[[:space:]]*/raw.cpu.uarch=/p' \
    -e 's/^cpu[[:space:]]*:[[:space:]]*/raw.cpu.cpu=/p' \
    -e 's/^vendor_id[[:space:]]*:[[:space:]]*/raw.cpu.vendor_id=/p' \
    -e 's/^vendor[[:space:]]*:[[:space:]]*/raw.cpu.vendor=/p' \
    -e 's/^CPU implementer[[:space:]]*:[[:space:]]*/raw.cpu.implementer=/p' \
    -e 's/^CPU part[[:space:]]*:[[:space:]]*/raw.cpu.part=/p' \
    -e 's/^CPU Family[[:space:]]*:[[:space:]]*/raw.cpu.family=/p' \
    -e 's/^CPU variant[[:space:]]*:[[:space:]]*/raw.cpu.variant=/p' \
    -e 's/^CPU revision[[:space:]]*:[[:space:]]*/raw.cpu.revision=/p' \
    -e 's/^cpu family[[:space:]]*:[[:space:]]*/raw.cpu.x86_family=/p' \
    -e 's/^model[[:space:]]*:[[:space:]]*/raw.cpu.x86_model=/p' \
    -e 's/^stepping[[:space:]]*:[[:space:]]*/raw.cpu.x86_stepping=/p' \
    -e 's/^processor[[:space:]]*:.*/raw.cpu.processor=1/p' \
    -e '/^flags.* hypervisor/s/.*/raw.cpu.hypervisor=1/p' \
    "$cpuinfo"
line /sys/devices/system/cpu/online; kv raw.cpu_online "$v"
[ -n "$v" ] || kv cores "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"

if [ -r /proc/meminfo ]; then
    while read -r k v u; do
        case $k in MemTotal:) kv memory_kb "$v"; break ;; esac
    done < /proc/meminfo
fi

page=$(getconf PAGESIZE 2>/dev/null || getconf PAGE_SIZE 2>/dev/null)
if [ -z "$page" ]; then
    page=$(sed -n 's/^KernelPageSize:[[:space:]]*\([0-9][0-9]*\) kB.*/\1/p' /proc/self/smaps 2>/dev/null | head -n 1)
    [ -z "$page" ] || page=$((page * 1024))
fi
kv page_size "$page"

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    kv extra.cgroup v2
    cg_path=
    if [ -r /proc/self/cgroup ]; then
        while IFS= read -r l; do
            case $l in 0::*) cg_path=${l#0::}; break ;; esac
        done < /proc/self/cgroup
    fi
    line "/sys/fs/cgroup$cg_path/memory.max"; kv extra.cgroup_memory_max "$v"
elif grep -q ' cgroup ' /proc/mounts 2>/dev/null; then
    kv extra.cgroup v1
else
    kv extra.cgroup none
fi

tz=${TZ:-}
if [ -z "$tz" ]; then line /etc/timezone; tz=$v; fi
if [ -z "$tz" ] && [ -L /etc/localtime ]; then
    tz=$(readlink /etc/localtime 2>/dev/null)
    tz=${tz##*zoneinfo/}
fi
kv extra.timezone "$tz"
kv extra.locale "${adaptest_locale:-POSIX}"
kv extra.sh "$(readlink -f /bin/sh 2>/dev/null || echo /bin/sh)"

if command -v systemd-detect-virt >/dev/null 2>&1; then
    kv extra.virt "$(systemd-detect-virt -v 2>/dev/null)"
    kv extra.container "$(systemd-detect-virt -c 2>/dev/null)"
elif [ -f /.dockerenv ]; then
    kv extra.container docker
elif [ -f /run/.containerenv ]; then
    kv extra.container podman
fi
line /sys/devices/virtual/dmi/id/sys_vendor; kv extra.dmi_vendor "$v"
line /sys/devices/virtual/dmi/id/product_name; kv extra.dmi_product "$v"
line /proc/device-tree/model; kv extra.dt_model "$v"
# Hardware identity: one `hw.*` line per fact, `hw.missing.FACT=REASON` when one cannot be read.
# Tests point ADAPTEST_SYSFS at a fake /sys.
sys=${ADAPTEST_SYSFS:-/sys}
d=$sys/class/dmi/id
if [ -d "$d" ]; then
    for f in sys_vendor product_name board_vendor board_name bios_vendor bios_version; do
        if [ ! -e "$d/$f" ]; then kv "hw.missing.dmi.$f" "not present"
        elif [ ! -r "$d/$f" ]; then kv "hw.missing.dmi.$f" "not readable"
        else
            line "$d/$f"
            if [ -n "$v" ]; then kv "hw.dmi.$f" "$v"; else kv "hw.missing.dmi.$f" "empty"; fi
        fi
    done
else
    kv hw.missing.dmi "not present ($d)"
fi
if [ -d "$sys/bus/pci/devices" ]; then
    n=0
    for p in "$sys"/bus/pci/devices/*; do
        [ -e "$p/vendor" ] || continue
        line "$p/vendor"; pv=$v; line "$p/device"; pd=$v
        line "$p/subsystem_vendor"; ps=$v; line "$p/subsystem_device"; pss=$v
        line "$p/class"; pc=$v
        drv=
        [ -L "$p/driver" ] && drv=$(readlink "$p/driver" 2>/dev/null) && drv=${drv##*/}
        kv hw.pci "${p##*/} $pv $pd ${ps:--} ${pss:--} ${pc:--} ${drv:--}"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || kv hw.missing.pci "not present (no devices in $sys/bus/pci/devices)"
else
    kv hw.missing.pci "not present ($sys/bus/pci)"
fi
if [ -d "$sys/devices/system/node" ]; then
    n=0
    for p in "$sys"/devices/system/node/node[0-9]*; do [ -d "$p" ] && n=$((n + 1)); done
    kv hw.numa_nodes "$n"
else
    kv hw.missing.numa "not present ($sys/devices/system/node: kernel without NUMA)"
fi
if [ -d "$sys/block" ]; then
    for p in "$sys"/block/*; do
        b=${p##*/}
        case $b in loop*|ram*|zram*|'*') continue ;; esac
        line "$p/size"; sz=$v
        line "$p/queue/rotational"; rot=$v
        line "$p/device/model"; m=$v
        [ -n "$m" ] || { line "$p/device/name"; m=$v; }
        kv hw.disk "$b ${sz:--} ${rot:--} $m"
    done
else
    kv hw.missing.disks "not present ($sys/block)"
fi
if [ -d "$sys/class/net" ]; then
    for p in "$sys"/class/net/*; do
        [ -e "$p/device" ] || continue
        drv=
        [ -L "$p/device/driver" ] && drv=$(readlink "$p/device/driver" 2>/dev/null) && drv=${drv##*/}
        kv hw.nic "${p##*/} ${drv:--}"
    done
else
    kv hw.missing.nics "not present ($sys/class/net)"
fi
exit 0
"##;

/// Turn the probe's output into an [`Environment`] for `target` of kind `target_kind`.
///
/// Tolerant by design: lines without `=`, keys that are not plain identifiers, empty values and
/// numbers that do not parse are ignored; a missing key leaves its field empty (or 0). A later
/// line for the same key wins. `extra.NAME` keys, and unknown keys, land in
/// [`Environment::extra`] (the former without the `extra.` prefix). `raw.*` keys are the script's
/// raw facts (first occurrence wins): they fill the fields the script leaves to the harness
/// (OS from os-release, CPU model and vendor from cpuinfo, cores from the online CPU list).
pub fn parse_probe(target: &str, target_kind: &str, output: &str) -> Environment {
    let mut env = Environment {
        target: target.to_owned(),
        target_kind: target_kind.to_owned(),
        ..Environment::default()
    };
    let mut memory_kb = None;
    let mut raw: BTreeMap<&str, &str> = BTreeMap::new();
    let mut hw: Vec<(&str, &str)> = Vec::new();
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
                if let Some(name) = key.strip_prefix("raw.") {
                    raw.entry(name).or_insert(value);
                    continue;
                }
                if let Some(name) = key.strip_prefix("hw.") {
                    hw.push((name, value));
                    continue;
                }
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
    derive_from_raw(&mut env, &raw);
    if !hw.is_empty() {
        env.hardware = Some(crate::hardware::hardware_from(&env, &raw, &hw));
    }
    env
}

/// A raw fact of the probe's output, unless absent or empty.
pub(crate) fn fact<'a>(raw: &BTreeMap<&str, &'a str>, key: &str) -> Option<&'a str> {
    raw.get(key).copied().filter(|v| !v.is_empty())
}

/// Fill what the probe left as raw facts; a field the output already set is kept.
fn derive_from_raw(env: &mut Environment, raw: &BTreeMap<&str, &str>) {
    let get = |k: &str| fact(raw, k);
    let fill = |field: &mut String, value: Option<String>| {
        if field.is_empty()
            && let Some(v) = value.filter(|v| !v.is_empty())
        {
            *field = v;
        }
    };
    fill(&mut env.os_id, get("os_release.ID").map(unquote));
    fill(
        &mut env.os_version,
        get("os_release.VERSION_ID")
            .map(unquote)
            .or_else(|| get("debian_version").map(str::to_owned)),
    );
    fill(
        &mut env.os_name,
        get("os_release.PRETTY_NAME")
            .map(unquote)
            .or_else(|| get("redhat_release").map(str::to_owned)),
    );
    if let Some(like) = get("os_release.ID_LIKE").map(unquote) {
        env.extra.entry("os_id_like".into()).or_insert(like);
    }
    if env.libc == "glibc"
        && let Some(ver) = get("ldd_version").and_then(last_version)
    {
        env.libc = format!("glibc {ver}");
    }
    if env.cores == 0 {
        env.cores = get("cpu_online").map_or(0, count_cpu_list);
    }
    if env.cores == 0 && get("cpu.processor").is_some() {
        env.cores = 1;
    }
    let (model, vendor) = name_cpu(raw);
    fill(&mut env.cpu_model, model);
    fill(&mut env.cpu_vendor, vendor);
    if let (Some(imp), Some(part)) = (get("cpu.implementer"), get("cpu.part")) {
        env.extra
            .entry("cpu_part".into())
            .or_insert_with(|| format!("{imp}:{part}"));
    } else if let Some(imp) = get("cpu.implementer") {
        env.extra
            .entry("cpu_part".into())
            .or_insert_with(|| format!("{imp}:"));
    }
    if let Some(family) = get("cpu.family") {
        env.extra
            .entry("cpu_family".into())
            .or_insert_with(|| family.to_owned());
    }
    if !env.extra.contains_key("virt") && get("cpu.hypervisor").is_some() {
        env.extra.insert("virt".into(), "vm".into());
    }
}

/// An os-release value without its surrounding quotes.
fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_owned();
        }
    }
    v.to_owned()
}

/// The last `N.N…` number in `text` (`ldd (Debian GLIBC 2.36-9) 2.36` → `2.36`).
fn last_version(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|t| t.trim_matches('.'))
        .rfind(|t| t.contains('.') && t.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// How many CPUs a kernel CPU list names (`0-3,6,8-9` → 7); 0 when it does not parse.
fn count_cpu_list(list: &str) -> u32 {
    let mut n = 0u32;
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let range = match part.split_once('-') {
            Some((a, b)) => a.parse::<u32>().ok().zip(b.parse::<u32>().ok()),
            None => part.parse::<u32>().ok().map(|a| (a, a)),
        };
        match range {
            Some((a, b)) if b >= a => n = n.saturating_add(b - a + 1),
            _ => return 0,
        }
    }
    n
}

/// CPU model and vendor from raw cpuinfo fields: x86 vendor ids, Arm implementer/part codes
/// (Kunpeng, Phytium, Neoverse…), LoongArch `CPU Family`/`Model Name`.
fn name_cpu(raw: &BTreeMap<&str, &str>) -> (Option<String>, Option<String>) {
    let get = |k: &str| fact(raw, k);
    let mut model = [
        "cpu.model_name",
        "cpu.model_name2",
        "cpu.cpu_model",
        "cpu.uarch",
        "cpu.cpu",
    ]
    .into_iter()
    .find_map(get)
    .map(str::to_owned);
    let mut vendor = get("cpu.vendor_id").or_else(|| get("cpu.vendor")).map(|v| {
        match v {
            "GenuineIntel" => "Intel",
            "AuthenticAMD" => "AMD",
            "HygonGenuine" => "Hygon",
            "CentaurHauls" => "Centaur",
            "IBM/S390" => "IBM",
            v if v.contains("Shanghai") => "Zhaoxin",
            v => v,
        }
        .to_owned()
    });
    if let Some(imp) = get("cpu.implementer") {
        let part = get("cpu.part");
        let name = match imp {
            "0x41" => "Arm",
            "0x42" => "Broadcom",
            "0x43" => "Cavium",
            "0x46" => "Fujitsu",
            "0x48" => "HiSilicon",
            "0x4e" => "NVIDIA",
            "0x50" => "APM",
            "0x51" => "Qualcomm",
            "0x61" => "Apple",
            "0x6d" => "Microsoft",
            "0x70" => "Phytium",
            "0xc0" => "Ampere",
            _ => "",
        };
        let v = if name.is_empty() {
            format!("implementer {imp}")
        } else {
            name.to_owned()
        };
        let core = match (imp, part.unwrap_or("")) {
            ("0x41", "0xd03") => Some("Cortex-A53".to_owned()),
            ("0x41", "0xd04") => Some("Cortex-A35".to_owned()),
            ("0x41", "0xd05") => Some("Cortex-A55".to_owned()),
            ("0x41", "0xd07") => Some("Cortex-A57".to_owned()),
            ("0x41", "0xd08") => Some("Cortex-A72".to_owned()),
            ("0x41", "0xd09") => Some("Cortex-A73".to_owned()),
            ("0x41", "0xd0a") => Some("Cortex-A75".to_owned()),
            ("0x41", "0xd0b") => Some("Cortex-A76".to_owned()),
            ("0x41", "0xd0c") => Some("Neoverse-N1".to_owned()),
            ("0x41", "0xd0d") => Some("Cortex-A77".to_owned()),
            ("0x41", "0xd40") => Some("Neoverse-V1".to_owned()),
            ("0x41", "0xd41") => Some("Cortex-A78".to_owned()),
            ("0x41", "0xd49") => Some("Neoverse-N2".to_owned()),
            ("0x41", "0xd4f") => Some("Neoverse-V2".to_owned()),
            ("0x48", "0xd01") => Some("Kunpeng-920".to_owned()),
            ("0x70", p)
                if p == "0x303" || p == "0x862" || p.starts_with("0x66") && p.len() == 5 =>
            {
                Some(format!("FTC{}", &p[2..]))
            }
            ("0xc0", "0xac3") => Some("Ampere-1".to_owned()),
            ("0xc0", "0xac4") => Some("Ampere-1a".to_owned()),
            _ => None,
        };
        if let Some(core) = core {
            model = Some(format!("{v} {core}"));
        } else if model.as_deref().is_none_or(|m| m.starts_with("ARMv")) {
            model = Some(format!("{v} part {}", part.unwrap_or("unknown")));
        }
        vendor = Some(v);
    }
    let family = get("cpu.family").unwrap_or("");
    if family.contains("Loongson") || model.as_deref().is_some_and(|m| m.contains("Loongson")) {
        vendor = Some("Loongson".to_owned());
    }
    if vendor.is_none()
        && let Some(m) = model.as_deref()
    {
        if m.starts_with("POWER") || m.contains("IBM") {
            vendor = Some("IBM".to_owned());
        } else if let Some((v, _)) = m.split_once(',') {
            vendor = Some(v.to_owned());
        }
    }
    (model, vendor)
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

    #[test]
    fn derives_fields_from_raw_facts() {
        let out = "\
raw.os_release.ID=\"openEuler\"
raw.os_release.VERSION_ID='22.03'
raw.os_release.PRETTY_NAME=\"openEuler 22.03 (LTS-SP3)\"
raw.debian_version=12.7
libc=glibc
raw.ldd_version=ldd (GNU libc) 2.34
raw.cpu.implementer=0x48
raw.cpu.part=0xd01
raw.cpu.implementer=0x41
raw.cpu.processor=1
raw.cpu.hypervisor=1
raw.cpu_online=0-3,6,8-9
";
        let env = parse_probe("t", "ssh", out);
        assert_eq!(env.os_id, "openEuler");
        assert_eq!(env.os_version, "22.03");
        assert_eq!(env.os_name, "openEuler 22.03 (LTS-SP3)");
        assert_eq!(env.libc, "glibc 2.34");
        // The first processor's implementer wins.
        assert_eq!(env.cpu_model, "HiSilicon Kunpeng-920");
        assert_eq!(env.cpu_vendor, "HiSilicon");
        assert_eq!(env.extra["cpu_part"], "0x48:0xd01");
        assert_eq!(env.cores, 7);
        assert_eq!(env.extra["virt"], "vm");
        // Raw facts are consumed, not stored as extras.
        assert!(
            env.extra.keys().all(|k| !k.starts_with("raw")),
            "{:?}",
            env.extra
        );
        // Fields the output set are kept; debian_version only fills a missing VERSION_ID.
        let env = parse_probe(
            "t",
            "ssh",
            "os_version=9\nraw.debian_version=12.7\nraw.cpu_online=0-x\n",
        );
        assert_eq!(env.os_version, "9");
        assert_eq!(env.cores, 0);
        let env = parse_probe("t", "ssh", "raw.debian_version=12.7\nraw.cpu_online=5\n");
        assert_eq!(env.os_version, "12.7");
        assert_eq!(env.cores, 1);
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
