//! The hardware identity half of the environment probe: turns the probe's `hw.*` lines and CPU
//! ids into a [`Hardware`], and names CPU microarchitectures from their vendor ids.
//!
//! A fact the probe could not read arrives as `hw.missing.FACT=REASON` and stays in
//! [`Hardware::missing`]; a fact that is absent for a reason only the harness knows (an emulated
//! CPU, an empty table) is added here, so nothing is silently empty.

use std::collections::BTreeMap;

use adaptest_schema::{CpuIdentity, Disk, Environment, Hardware, Nic, PciDevice};

use crate::env_probe::fact;

/// The [`Hardware`] from the probe's `hw.*` lines (`hw.` stripped) and raw CPU facts.
pub(crate) fn hardware_from(
    env: &Environment,
    raw: &BTreeMap<&str, &str>,
    lines: &[(&str, &str)],
) -> Hardware {
    let mut hw = Hardware {
        memory_bytes: env.memory_bytes,
        ..Hardware::default()
    };
    for &(key, value) in lines {
        if let Some(name) = key.strip_prefix("dmi.") {
            hw.dmi.insert(name.to_owned(), value.to_owned());
        } else if let Some(name) = key.strip_prefix("missing.") {
            hw.missing.insert(name.to_owned(), value.to_owned());
        } else {
            match key {
                "pci" => hw.pci.extend(pci(value)),
                "disk" => hw.disks.extend(disk(value)),
                "nic" => hw.nics.extend(nic(value)),
                "numa_nodes" => hw.numa_nodes = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    for d in hw.disks.iter().filter(|d| d.model.is_empty()) {
        hw.missing.insert(
            format!("disks.{}.model", d.name),
            format!("not present (no device/model for /sys/block/{})", d.name),
        );
    }
    if hw.memory_bytes == 0 {
        hw.missing
            .entry("memory".into())
            .or_insert_with(|| "not readable (/proc/meminfo)".into());
    }
    hw.cpu = cpu_identity(env, raw);
    if hw.cpu.microarch.is_empty() {
        hw.missing.insert(
            "cpu.microarch".into(),
            "not present (no CPU ids in cpuinfo)".into(),
        );
    }
    hw
}

/// Replace what an emulated target's probe saw with `reason`: under qemu-user, `/sys` and
/// `/proc` are the host's, so they say nothing about the emulated platform.
pub fn mark_emulated(hw: &mut Hardware, reason: &str) {
    let why = format!("emulated ({reason})");
    hw.dmi.clear();
    hw.pci.clear();
    hw.disks.clear();
    hw.nics.clear();
    hw.numa_nodes = 0;
    hw.cpu = CpuIdentity {
        microarch: why.clone(),
        ..CpuIdentity::default()
    };
    hw.missing.clear();
    for fact in ["dmi", "pci", "numa", "disks", "nics", "cpu.microarch"] {
        hw.missing.insert(fact.into(), why.clone());
    }
}

/// Hex id without `0x`, lower case; `-` (the probe's "none") becomes empty.
fn hex(v: &str) -> String {
    let v = v.trim();
    if v == "-" {
        return String::new();
    }
    v.strip_prefix("0x").unwrap_or(v).to_ascii_lowercase()
}

/// `ADDRESS VENDOR DEVICE SUBVENDOR SUBDEVICE CLASS DRIVER`.
fn pci(value: &str) -> Option<PciDevice> {
    let f: Vec<&str> = value.split_whitespace().collect();
    if f.len() < 3 {
        return None;
    }
    let at = |i: usize| f.get(i).copied().unwrap_or("-");
    let driver = at(6);
    Some(PciDevice {
        address: f[0].to_owned(),
        vendor: hex(f[1]),
        device: hex(f[2]),
        subvendor: hex(at(3)),
        subdevice: hex(at(4)),
        class: hex(at(5)),
        driver: if driver == "-" {
            String::new()
        } else {
            driver.to_owned()
        },
    })
}

/// `NAME SECTORS ROTATIONAL MODEL…` (sectors of 512 bytes, as `/sys/block/*/size` counts).
fn disk(value: &str) -> Option<Disk> {
    let mut f = value.splitn(4, ' ');
    let name = f.next()?.to_owned();
    let size_bytes = f
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0, |s| s.saturating_mul(512));
    let rotational = match f.next() {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    };
    let model = f.next().unwrap_or("").trim().to_owned();
    Some(Disk {
        name,
        model,
        size_bytes,
        rotational,
    })
}

/// `NAME DRIVER`.
fn nic(value: &str) -> Option<Nic> {
    let (name, driver) = value.split_once(' ').unwrap_or((value, "-"));
    Some(Nic {
        name: name.to_owned(),
        driver: if driver.trim() == "-" {
            String::new()
        } else {
            driver.trim().to_owned()
        },
    })
}

/// Vendor, ids and microarchitecture of the CPU from the probe's raw cpuinfo facts.
fn cpu_identity(env: &Environment, raw: &BTreeMap<&str, &str>) -> CpuIdentity {
    let get = |k: &str| fact(raw, k);
    let vendor = env.cpu_vendor.clone();
    let mut id = CpuIdentity {
        vendor: vendor.clone(),
        ..CpuIdentity::default()
    };
    if let Some(family) = get("cpu.x86_family") {
        id.family = family.to_owned();
        id.model = get("cpu.x86_model").unwrap_or("").to_owned();
        id.stepping = get("cpu.x86_stepping").unwrap_or("").to_owned();
        let (f, m) = (id.family.parse::<u32>().ok(), id.model.parse::<u32>().ok());
        id.microarch = match (f, m) {
            (Some(f), Some(m)) => x86_microarch(&vendor, f, m, id.stepping.parse().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("unknown ({vendor} family {f} model {m})")),
            _ => format!("unknown ({vendor} family {} model {})", id.family, id.model),
        };
    } else if let Some(imp) = get("cpu.implementer") {
        id.family = imp.to_ascii_lowercase();
        id.model = get("cpu.part").unwrap_or("").to_ascii_lowercase();
        id.stepping = format!(
            "{}/{}",
            get("cpu.variant").unwrap_or("?"),
            get("cpu.revision").unwrap_or("?")
        );
        id.microarch = arm_microarch(&id.family, &id.model)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("unknown (implementer {} part {})", id.family, id.model));
    } else if vendor == "Loongson" || env.cpu_model.contains("Loongson") {
        id.family = get("cpu.family").unwrap_or("").to_owned();
        id.model = env.cpu_model.clone();
        id.microarch = loongson_microarch(&env.cpu_model)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("unknown ({})", env.cpu_model));
    }
    id
}

/// x86 microarchitectures by vendor, family and model (decimal, as cpuinfo prints them).
pub fn x86_microarch(
    vendor: &str,
    family: u32,
    model: u32,
    stepping: Option<u32>,
) -> Option<&'static str> {
    Some(match (vendor, family, model) {
        ("Intel", 6, 0x3f) => "Haswell",
        ("Intel", 6, 0x4f | 0x56) => "Broadwell",
        ("Intel", 6, 0x55) => match stepping {
            Some(s) if s >= 10 => "Cooper Lake",
            Some(s) if s >= 5 => "Cascade Lake",
            _ => "Skylake-SP",
        },
        ("Intel", 6, 0x4e | 0x5e) => "Skylake",
        ("Intel", 6, 0x8e | 0x9e) => "Kaby Lake / Coffee Lake",
        ("Intel", 6, 0x6a | 0x6c) => "Ice Lake-SP",
        ("Intel", 6, 0x7e | 0x7d) => "Ice Lake",
        ("Intel", 6, 0x8c | 0x8d) => "Tiger Lake",
        ("Intel", 6, 0x97 | 0x9a) => "Alder Lake",
        ("Intel", 6, 0xb7 | 0xba | 0xbf) => "Raptor Lake",
        ("Intel", 6, 0x8f) => "Sapphire Rapids",
        ("Intel", 6, 0xcf) => "Emerald Rapids",
        ("Intel", 6, 0xad | 0xae) => "Granite Rapids",
        ("Intel", 6, 0xaf) => "Sierra Forest",
        ("AMD", 0x17, 0x01 | 0x11 | 0x18) => "Zen",
        ("AMD", 0x17, 0x08) => "Zen+",
        ("AMD", 0x17, 0x31 | 0x60 | 0x68 | 0x71 | 0x90 | 0xa0) => "Zen 2",
        ("AMD", 0x17, _) => "Zen / Zen+ / Zen 2",
        ("AMD", 0x19, 0x00..=0x0f | 0x20..=0x2f | 0x40..=0x4f | 0x50..=0x5f) => "Zen 3",
        ("AMD", 0x19, 0x10..=0x1f | 0x60..=0x7f | 0xa0..=0xaf) => "Zen 4",
        ("AMD", 0x1a, _) => "Zen 5",
        ("Hygon", 0x18, 0) => "Dhyana (Hygon C86 gen 1)",
        ("Hygon", 0x18, 1) => "Dhyana+ (Hygon C86 gen 2)",
        ("Hygon", 0x18, 2) => "Hygon C86 gen 3",
        ("Hygon", 0x18, 4) => "Hygon C86 gen 4",
        ("Zhaoxin" | "Centaur", 7, 0x1b) => "ZhangJiang (KX-5000 / KH-20000)",
        ("Zhaoxin" | "Centaur", 7, 0x3b) => "LuJiaZui (KX-6000 / KH-30000)",
        ("Zhaoxin" | "Centaur", 6, 0x0f | 0x19) => "WuDaoKou (ZX-C)",
        _ => return None,
    })
}

/// Arm microarchitectures by implementer and part (lower-case hex with `0x`).
pub fn arm_microarch(implementer: &str, part: &str) -> Option<&'static str> {
    Some(match (implementer, part) {
        ("0x48", "0xd01") => "TaiShan v110 (Kunpeng 920)",
        ("0x70", "0x662") => "FTC662 (FT-2000+/64)",
        ("0x70", "0x663") => "FTC663 (FT-2000/4, S2500)",
        ("0x70", "0x862") => "FTC862 (S5000C)",
        ("0x70", "0x303") => "FTC310",
        ("0x41", "0xd08") => "Cortex-A72",
        ("0x41", "0xd0c") => "Neoverse-N1",
        ("0x41", "0xd40") => "Neoverse-V1",
        ("0x41", "0xd49") => "Neoverse-N2",
        ("0x41", "0xd4f") => "Neoverse-V2",
        ("0xc0", "0xac3") => "Ampere-1",
        _ => return None,
    })
}

/// Loongson cores from the model name (`Loongson-3A5000`).
pub fn loongson_microarch(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_uppercase();
    Some(if m.contains("3A6000") || m.contains("3C6000") {
        "LA664"
    } else if m.contains("3A5000") || m.contains("3C5000") || m.contains("3D5000") {
        "LA464"
    } else if m.contains("3A4000") || m.contains("3B4000") {
        "GS464V"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env_probe::{PROBE_SCRIPT, parse_probe};

    #[test]
    fn names_microarchitectures_and_says_unknown() {
        assert_eq!(
            x86_microarch("Intel", 6, 0x55, Some(7)),
            Some("Cascade Lake")
        );
        assert_eq!(x86_microarch("Intel", 6, 0x55, Some(4)), Some("Skylake-SP"));
        assert_eq!(x86_microarch("AMD", 0x19, 1, None), Some("Zen 3"));
        assert_eq!(
            x86_microarch("Hygon", 0x18, 0, None),
            Some("Dhyana (Hygon C86 gen 1)")
        );
        assert_eq!(x86_microarch("Intel", 5, 1, None), None);
        assert_eq!(
            arm_microarch("0x48", "0xd01"),
            Some("TaiShan v110 (Kunpeng 920)")
        );
        assert_eq!(arm_microarch("0x48", "0xd02"), None);
        assert_eq!(loongson_microarch("Loongson-3A5000"), Some("LA464"));
        let env = parse_probe(
            "t",
            "ssh",
            "raw.cpu.implementer=0x48\nraw.cpu.part=0xd02\nraw.cpu.variant=0x1\n\
             raw.cpu.revision=0\nhw.numa_nodes=4\n",
        );
        let hw = env.hardware.expect("hardware");
        assert_eq!(hw.cpu.vendor, "HiSilicon");
        assert_eq!(hw.cpu.microarch, "unknown (implementer 0x48 part 0xd02)");
        assert_eq!(hw.cpu.stepping, "0x1/0");
        assert_eq!(hw.numa_nodes, 4);
        // No meminfo: the missing memory says so.
        assert!(
            hw.missing["memory"].contains("not readable"),
            "{:?}",
            hw.missing
        );
    }

    /// The script against a fake /sys (ADAPTEST_SYSFS): every fact kind, and the reasons.
    #[test]
    fn script_reads_a_fake_sysfs() {
        let root = std::env::temp_dir().join(format!("adaptest-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let w = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        w("class/dmi/id/sys_vendor", "Huawei\n");
        w("class/dmi/id/product_name", "TaiShan 200 (Model 2280)\n");
        w("class/dmi/id/board_vendor", "Huawei\n");
        w("class/dmi/id/board_name", "BC82AMDDA\n");
        w("class/dmi/id/bios_vendor", "\n");
        // bios_version absent.
        let dev = "bus/pci/devices/0000:7d:00.0";
        w(&format!("{dev}/vendor"), "0x19e5\n");
        w(&format!("{dev}/device"), "0xa222\n");
        w(&format!("{dev}/subsystem_vendor"), "0x19e5\n");
        w(&format!("{dev}/subsystem_device"), "0x00a1\n");
        w(&format!("{dev}/class"), "0x020000\n");
        std::fs::create_dir_all(root.join("bus/pci/drivers/hns3")).expect("mkdir");
        std::os::unix::fs::symlink(
            root.join("bus/pci/drivers/hns3"),
            root.join(dev).join("driver"),
        )
        .expect("symlink");
        w("devices/system/node/node0/x", "");
        w("devices/system/node/node1/x", "");
        w("block/sda/size", "1953525168\n");
        w("block/sda/queue/rotational", "1\n");
        w("block/sda/device/model", "HUS726T4TALA6L4\n");
        w("block/loop0/size", "0\n");
        w("class/net/enp125s0f0/device/x", "");
        std::fs::create_dir_all(root.join("drivers/hns3")).expect("mkdir");
        std::os::unix::fs::symlink(
            root.join("drivers/hns3"),
            root.join("class/net/enp125s0f0/device/driver"),
        )
        .expect("symlink");
        w("class/net/lo/addr_len", "6\n");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(PROBE_SCRIPT)
            .env("ADAPTEST_SYSFS", &root)
            .output()
            .expect("run /bin/sh");
        std::fs::remove_dir_all(&root).expect("rm");
        assert!(out.status.success(), "{out:?}");
        let env = parse_probe("t", "local", &String::from_utf8_lossy(&out.stdout));
        let hw = env.hardware.expect("hardware");
        assert_eq!(hw.dmi["sys_vendor"], "Huawei");
        assert_eq!(hw.dmi["product_name"], "TaiShan 200 (Model 2280)");
        assert_eq!(hw.dmi["board_name"], "BC82AMDDA");
        assert_eq!(hw.missing["dmi.bios_vendor"], "empty");
        assert_eq!(hw.missing["dmi.bios_version"], "not present");
        assert_eq!(hw.pci.len(), 1);
        assert_eq!(hw.pci[0].four_tuple(), "19e5:a222:19e5:00a1");
        assert_eq!(hw.pci[0].class, "020000");
        assert_eq!(hw.pci[0].driver, "hns3");
        assert_eq!(hw.numa_nodes, 2);
        assert_eq!(hw.disks.len(), 1, "{:?}", hw.disks);
        assert_eq!(hw.disks[0].model, "HUS726T4TALA6L4");
        assert_eq!(hw.disks[0].size_bytes, 1_953_525_168 * 512);
        assert_eq!(hw.disks[0].rotational, Some(true));
        assert_eq!(hw.nics.len(), 1, "{:?}", hw.nics);
        assert_eq!(
            (hw.nics[0].name.as_str(), hw.nics[0].driver.as_str()),
            ("enp125s0f0", "hns3")
        );

        // An empty /sys: every table says it is not present.
        let empty = std::env::temp_dir().join(format!("adaptest-sysfs0-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("mkdir");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(PROBE_SCRIPT)
            .env("ADAPTEST_SYSFS", &empty)
            .output()
            .expect("run /bin/sh");
        std::fs::remove_dir_all(&empty).expect("rm");
        let hw = parse_probe("t", "local", &String::from_utf8_lossy(&out.stdout))
            .hardware
            .expect("hardware");
        for fact in ["dmi", "pci", "numa", "disks", "nics"] {
            assert!(
                hw.missing[fact].starts_with("not present"),
                "{fact}: {:?}",
                hw.missing
            );
        }
    }

    #[test]
    fn emulated_hardware_says_so() {
        let mut hw = Hardware::default();
        hw.dmi.insert("sys_vendor".into(), "host vendor".into());
        mark_emulated(&mut hw, "qemu-user: /sys is the host's");
        assert!(hw.dmi.is_empty());
        assert_eq!(
            hw.missing["dmi"],
            "emulated (qemu-user: /sys is the host's)"
        );
        assert!(hw.cpu.microarch.starts_with("emulated"));
    }
}
