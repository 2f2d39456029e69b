//! The QEMU command line per architecture: x86_64 on `q35` (KVM or TCG), aarch64 on `virt`
//! (cortex-a57), loongarch64 on `virt` (la464); virtio disk, net (user networking with
//! `restrict=on`, host forwards on 127.0.0.1 only), rng and 9p; console to a file; QMP socket.
//!
//! [`Machine::signature`] is the part of the command line that decides the guest's state, so a
//! saved state is only ever restored into an identical machine.

use crate::image::Arch;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How guest instructions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Where the root file system comes from.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    /// A disk image (booted through a qcow2 overlay).
    Disk { base: PathBuf, format: String },
    /// A directory exported read-only over 9p (`mount_tag=rootfs`).
    NineP(PathBuf),
    /// Whatever the kernel and initrd bring (or the firmware finds) — no disk.
    None,
}

/// Everything about the virtual machine except per-run file locations and ports.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub arch: Arch,
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// The full kernel command line (console and adaptest settings included).
    pub append: String,
    pub firmware: Option<PathBuf>,
    pub root: Root,
    /// The QEMU version string (`qemu-system-… --version`, first line).
    pub qemu_version: String,
}

/// Per-run files and host ports of one QEMU process.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub name: String,
    pub console: PathBuf,
    pub qmp: PathBuf,
    pub pidfile: PathBuf,
    /// The qcow2 overlay (for [`Root::Disk`]).
    pub overlay: Option<PathBuf>,
    /// Guest TCP ports forwarded from an ephemeral port on 127.0.0.1.
    pub forwards: Vec<u16>,
    /// Restore a saved state from this file instead of booting (`-incoming defer`: the
    /// caller starts the load over QMP once it has set the migration capabilities).
    pub incoming: Option<PathBuf>,
    /// Guest RAM in this file (a warm-start snapshot's RAM): `true` maps it shared (the guest
    /// that will be saved writes its RAM into the file), `false` private (a restored guest
    /// reads the saved RAM page by page as it touches it, and its writes never reach the file).
    pub ram_file: Option<(PathBuf, bool)>,
}

impl Machine {
    /// The machine type (`q35`, `virt`).
    pub(crate) fn machine_type(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "q35",
            Arch::Aarch64 | Arch::Loongarch64 => "virt",
        }
    }

    pub(crate) fn cpu_model(&self) -> &'static str {
        match (self.arch, self.accel) {
            (Arch::X86_64, Accel::Kvm) => "host",
            (Arch::X86_64, Accel::Tcg) => "max",
            (Arch::Aarch64, _) => "cortex-a57",
            (Arch::Loongarch64, _) => "la464",
        }
    }

    /// The QEMU arguments (without the binary).
    pub(crate) fn args(&self, l: &Launch) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&str]| a.extend(parts.iter().map(OsString::from));
        push(&["-name", &format!("guest={},process={}", l.name, l.name)]);
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        match &l.ram_file {
            Some((file, shared)) => {
                push(&[
                    "-machine",
                    &format!("{},memory-backend=ram0", self.machine_type()),
                ]);
                push(&[
                    "-object",
                    &format!(
                        "memory-backend-file,id=ram0,size={}M,mem-path={},share={}",
                        self.memory_mb,
                        opt_path(file),
                        if *shared { "on" } else { "off" }
                    ),
                ]);
            }
            None => push(&["-machine", self.machine_type()]),
        }
        push(&["-accel", self.accel.name()]);
        push(&["-cpu", self.cpu_model()]);
        push(&["-smp", &self.cpus.to_string()]);
        push(&["-m", &format!("{}M", self.memory_mb)]);
        push(&[
            "-chardev",
            &format!("file,id=con,path={}", opt_path(&l.console)),
            "-serial",
            "chardev:con",
        ]);
        push(&[
            "-qmp",
            &format!("unix:{},server=on,wait=off", opt_path(&l.qmp)),
        ]);
        a.push("-pidfile".into());
        a.push(l.pidfile.clone().into());
        if let Some(k) = &self.kernel {
            a.push("-kernel".into());
            a.push(k.clone().into());
            if let Some(i) = &self.initrd {
                a.push("-initrd".into());
                a.push(i.clone().into());
            }
            a.push("-append".into());
            a.push(self.append.clone().into());
        }
        if let Some(f) = &self.firmware {
            a.push("-bios".into());
            a.push(f.clone().into());
        }
        match &self.root {
            Root::Disk { .. } => {
                let overlay = l.overlay.as_deref().unwrap_or(Path::new("overlay.qcow2"));
                a.push("-drive".into());
                a.push(
                    format!(
                        "if=none,id=root,format=qcow2,discard=unmap,file={}",
                        opt_path(overlay)
                    )
                    .into(),
                );
                a.push("-device".into());
                a.push("virtio-blk-pci,drive=root,id=rootdisk".into());
            }
            Root::NineP(dir) => {
                a.push("-fsdev".into());
                a.push(
                    format!(
                        "local,id=rootfs,path={},security_model=passthrough,readonly=on",
                        opt_path(dir)
                    )
                    .into(),
                );
                a.push("-device".into());
                a.push("virtio-9p-pci,fsdev=rootfs,mount_tag=rootfs".into());
            }
            Root::None => {}
        }
        let mut netdev = String::from("user,id=net0,restrict=on");
        for p in &l.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:0-10.0.2.15:{p}"));
        }
        a.push("-netdev".into());
        a.push(netdev.into());
        a.push("-device".into());
        a.push("virtio-net-pci,netdev=net0,id=nic0,romfile=".into());
        a.push("-device".into());
        a.push("virtio-rng-pci,id=rng0".into());
        if l.incoming.is_some() {
            a.push("-incoming".into());
            a.push("defer".into());
        }
        a
    }

    /// What a saved state depends on: restoring it into a machine with another signature is
    /// refused by construction (the signature is part of the snapshot's cache key).
    pub(crate) fn signature(&self) -> String {
        let mut s = format!(
            "qemu={}\narch={}\nmachine={}\naccel={}\ncpu={}\nsmp={}\nmemory={}\nappend={}\n",
            self.qemu_version,
            self.arch.name(),
            self.machine_type(),
            self.accel.name(),
            self.cpu_model(),
            self.cpus,
            self.memory_mb,
            self.append
        );
        for (what, p) in [
            ("kernel", &self.kernel),
            ("initrd", &self.initrd),
            ("firmware", &self.firmware),
        ] {
            s.push_str(&format!("{what}={}\n", identity(p.as_deref())));
        }
        match &self.root {
            Root::Disk { base, format } => {
                s.push_str(&format!("root=disk:{format}:{}\n", identity(Some(base))));
            }
            Root::NineP(dir) => s.push_str(&format!("root=9p:{}\n", dir.display())),
            Root::None => s.push_str("root=none\n"),
        }
        s.push_str("devices=virtio-blk,virtio-net(user,restrict),virtio-rng\n");
        s
    }
}

/// A file's identity for cache keys: path, size and modification time.
fn identity(p: Option<&Path>) -> String {
    let Some(p) = p else {
        return "-".into();
    };
    let meta = std::fs::metadata(p).ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{size}:{mtime}", p.display())
}

/// A path inside a QEMU option value, where `,` must be doubled.
fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(arch: Arch) -> Machine {
        Machine {
            arch,
            accel: Accel::Tcg,
            memory_mb: 512,
            cpus: 2,
            kernel: Some("/img/vmlinuz".into()),
            initrd: Some("/img/initrd.gz".into()),
            append: "console=ttyAMA0".into(),
            firmware: None,
            root: Root::Disk {
                base: "/img/disk.ext4".into(),
                format: "raw".into(),
            },
            qemu_version: "QEMU emulator version 7.2.22".into(),
        }
    }

    fn launch() -> Launch {
        Launch {
            name: "adaptest-arm".into(),
            console: "/run/x/console.log".into(),
            qmp: "/tmp/s/qmp.sock".into(),
            pidfile: "/run/x/qemu.pid".into(),
            overlay: Some("/run/x/a,b.qcow2".into()),
            forwards: vec![22, 6379],
            incoming: None,
            ram_file: None,
        }
    }

    #[test]
    fn aarch64_command_line() {
        let args: Vec<String> = machine(Arch::Aarch64)
            .args(&launch())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(
            line.contains("-machine virt -accel tcg -cpu cortex-a57 -smp 2 -m 512M"),
            "{line}"
        );
        assert!(line.contains("file=/run/x/a,,b.qcow2"), "{line}");
        assert!(line.contains("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-10.0.2.15:22,hostfwd=tcp:127.0.0.1:0-10.0.2.15:6379"), "{line}");
        assert!(!line.contains("-incoming"));
        assert!(!line.contains("0.0.0.0"));
    }

    #[test]
    fn a_snapshot_guest_keeps_its_ram_in_a_file_and_a_restore_maps_it_privately() {
        let line = |l: &Launch| {
            machine(Arch::Aarch64)
                .args(l)
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut l = launch();
        l.ram_file = Some(("/c/w/ram.bin".into(), true));
        let save = line(&l);
        assert!(save.contains("-machine virt,memory-backend=ram0"), "{save}");
        assert!(
            save.contains("memory-backend-file,id=ram0,size=512M,mem-path=/c/w/ram.bin,share=on"),
            "{save}"
        );
        l.ram_file = Some(("/c/w/ram.bin".into(), false));
        l.incoming = Some("/c/w/state.bin".into());
        let restore = line(&l);
        assert!(restore.contains("share=off"), "{restore}");
        // The load starts over QMP, after the capabilities are set.
        assert!(restore.ends_with("-incoming defer"), "{restore}");
    }

    #[test]
    fn signature_ignores_run_files_but_not_the_machine() {
        let a = machine(Arch::X86_64);
        let mut b = a.clone();
        assert_eq!(a.signature(), b.signature());
        b.memory_mb = 1024;
        assert_ne!(a.signature(), b.signature());
        let mut c = a.clone();
        c.accel = Accel::Kvm;
        assert_ne!(a.signature(), c.signature());
        assert_eq!(c.cpu_model(), "host");
    }
}
