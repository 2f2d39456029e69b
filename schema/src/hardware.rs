//! The hardware identity of a target ([`Hardware`], in [`crate::Environment::hardware`]): what a
//! certification's verdict holds for, and what verdict inheritance compares.
//!
//! Every fact the probe could not read is named in [`Hardware::missing`] with the reason
//! (`not present`, `not readable`, `emulated …`), so an empty field is never silent.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The hardware a target reported (optional in the schema: older results have none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Hardware {
    /// `/sys/class/dmi/id` facts by file name: `sys_vendor`, `product_name`, `board_vendor`,
    /// `board_name`, `bios_vendor`, `bios_version`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dmi: BTreeMap<String, String>,
    #[serde(default)]
    pub cpu: CpuIdentity,
    /// Total memory in bytes (the same as the environment's `memory_bytes`).
    #[serde(default)]
    pub memory_bytes: u64,
    /// NUMA nodes from `/sys/devices/system/node` (0 when unknown: see `missing`).
    #[serde(default)]
    pub numa_nodes: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<PciDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<Nic>,
    /// Fact (`dmi`, `dmi.bios_version`, `pci`, `numa`, `cpu.microarch`, …) → why it is missing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub missing: BTreeMap<String, String>,
}

/// The CPU as a certification names it: vendor and the ids that fix its generation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuIdentity {
    /// `Intel`, `AMD`, `Hygon`, `Zhaoxin`, `HiSilicon`, `Phytium`, `Loongson`, …
    #[serde(default)]
    pub vendor: String,
    /// x86 `cpu family` (decimal, as cpuinfo prints it); Arm: the implementer (`0x48`).
    #[serde(default)]
    pub family: String,
    /// x86 `model` (decimal); Arm: the part (`0xd01`); Loongson: the model name.
    #[serde(default)]
    pub model: String,
    /// x86 `stepping`; Arm: `variant/revision` (`0x1/0`).
    #[serde(default)]
    pub stepping: String,
    /// `Cascade Lake`, `Zen 3`, `TaiShan v110`, … or `unknown (…)` naming the ids.
    #[serde(default)]
    pub microarch: String,
}

/// One PCI function from `/sys/bus/pci/devices`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PciDevice {
    /// `0000:00:02.0`.
    pub address: String,
    /// Four hex ids without `0x`: vendor, device, subsystem vendor, subsystem device.
    pub vendor: String,
    pub device: String,
    #[serde(default)]
    pub subvendor: String,
    #[serde(default)]
    pub subdevice: String,
    /// The class code, six hex digits (`020000` = Ethernet controller).
    #[serde(default)]
    pub class: String,
    /// The bound driver, empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
}

impl PciDevice {
    /// `vendor:device:subvendor:subdevice`, the tuple a card's certification names.
    pub fn four_tuple(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.vendor, self.device, self.subvendor, self.subdevice
        )
    }
}

/// One block device from `/sys/block` (loop, ram and zram devices left out).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Disk {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(default)]
    pub size_bytes: u64,
    /// `Some(true)` for a spinning disk; `None` when the kernel did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
}

/// One network interface from `/sys/class/net` that has a device (virtual ones left out).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Nic {
    pub name: String,
    /// The driver bound to its device (`virtio_net`, `ixgbe`, `hinic`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
}
