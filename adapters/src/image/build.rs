//! Building an image: debootstrap a minbase Debian root of the guest arch (through binfmt for a
//! foreign arch), install the recipe's packages, add the Debian kernel of that arch and a busybox
//! initramfs, generate the SSH keys, and write the root as an ext4 disk image.
//!
//! Runs as root on a Debian host and installs the host tools it lacks with apt-get. The Debian
//! mirror is read from the host's apt sources at run time. Work happens in
//! `images/.build-<name>-<hash>/` under an exclusive lock and is renamed into place only when
//! complete; a failed build leaves its directory (with `build.log`) until the next attempt.
//!
//! (long because the image build is one ordered sequence of steps on one `Builder`; the small file and mount helpers after it word errors in its terms)

use super::guest_files::{
    GUEST_INIT, HOSTS, INITRAMFS_INIT, INITTAB, OPTIONAL_MODULES, REQUIRED_MODULES, SSHD_CONFIG,
};
use super::{Arch, Image, ImageError, MANIFEST_FORMAT, Manifest, RECIPE_VERSION, Recipe};
use crate::file_lock::FileLock;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Packages every image gets besides minbase: sshd (the command channel), a static busybox (the
/// initramfs and PID 1), kmod (so suites can load more kernel modules) and tzdata (minbase has
/// no time zone database; certification suites check Asia/Shanghai).
const BASE_PACKAGES: &[&str] = &["openssh-server", "busybox-static", "kmod", "tzdata"];
/// Free space left in the disk image beyond what the root file system uses.
const DISK_HEADROOM: u64 = 3 << 30;

/// What [`build`] did.
#[derive(Debug)]
pub struct BuildOutcome {
    pub image: Image,
    /// The image already existed: nothing was built.
    pub cached: bool,
    pub seconds: f64,
}

/// Build the image of `recipe` under `cache_dir/images/`, or return the existing one.
/// `progress` receives one line per step.
pub fn build(
    recipe: &Recipe,
    cache_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildOutcome, ImageError> {
    let started = Instant::now();
    let images = super::images_dir(cache_dir);
    let final_dir = images.join(recipe.dir_name());
    if let Ok(image) = Image::load(&final_dir) {
        return Ok(BuildOutcome {
            image,
            cached: true,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ImageError::NotRoot);
    }
    let lock_path = images.join(format!(".{}.lock", recipe.dir_name()));
    let _lock = FileLock::exclusive(&lock_path).map_err(|source| ImageError::Io {
        op: "lock",
        path: lock_path.clone(),
        source,
    })?;
    // Someone else may have built it while we waited for the lock.
    if let Ok(image) = Image::load(&final_dir) {
        return Ok(BuildOutcome {
            image,
            cached: true,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let work = images.join(format!(".build-{}", recipe.dir_name()));
    if work.exists() {
        progress(&format!("removing the unfinished build {}", work.display()));
        remove_tree(&work)?;
    }
    mkdir(&work)?;
    let mut b = Builder::new(recipe, work.clone(), progress)?;
    b.run(started)?;
    drop(b);
    std::fs::rename(&work, &final_dir).map_err(|source| ImageError::Io {
        op: "move the finished image to",
        path: final_dir.clone(),
        source,
    })?;
    let image = Image::load(&final_dir)?;
    Ok(BuildOutcome {
        image,
        cached: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

struct Builder<'a> {
    recipe: &'a Recipe,
    work: PathBuf,
    rootfs: PathBuf,
    log_path: PathBuf,
    log: File,
    progress: &'a mut dyn FnMut(&str),
    step: usize,
}

const STEPS: usize = 8;

impl<'a> Builder<'a> {
    fn new(
        recipe: &'a Recipe,
        work: PathBuf,
        progress: &'a mut dyn FnMut(&str),
    ) -> Result<Builder<'a>, ImageError> {
        let log_path = work.join("build.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&log_path)
            .map_err(|source| ImageError::Io {
                op: "create",
                path: log_path.clone(),
                source,
            })?;
        Ok(Builder {
            recipe,
            rootfs: work.join("rootfs"),
            work,
            log_path,
            log,
            progress,
            step: 0,
        })
    }

    fn say(&mut self, what: &str) {
        self.step += 1;
        let line = format!("[{}/{STEPS}] {what}", self.step);
        let _ = writeln!(self.log, "\n### {line}");
        (self.progress)(&line);
    }

    fn run(&mut self, started: Instant) -> Result<Manifest, ImageError> {
        let arch = self.recipe.arch;
        self.say("host tools");
        self.host_tools()?;
        ensure_binfmt(arch, self)?;
        let mirror = debian_mirror(&self.recipe.release)?;

        self.say(&format!(
            "debootstrap {} {} (minbase) from {mirror}",
            self.recipe.release,
            arch.debian()
        ));
        let mut cmd = Command::new("debootstrap");
        cmd.arg(format!("--arch={}", arch.debian()))
            .arg("--variant=minbase")
            .arg(format!("--include={}", BASE_PACKAGES.join(",")))
            .arg(&self.recipe.release)
            .arg(&self.rootfs)
            .arg(&mirror);
        self.exec("debootstrap the root file system", &mut cmd)?;

        self.say(&if self.recipe.packages.is_empty() {
            "kernel package".to_string()
        } else {
            format!("packages {} and the kernel", self.recipe.packages.join(" "))
        });
        let kernel_deb = self.chroot_stage()?;

        self.say("kernel and modules");
        let kver = self.kernel(&kernel_deb)?;

        self.say("guest configuration and SSH keys");
        self.configure()?;

        self.say("initramfs");
        self.initramfs(&kver)?;

        self.say("ext4 disk image");
        self.disk()?;

        self.say("manifest");
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: self.recipe.name.clone(),
            hash: self.recipe.hash(),
            arch,
            release: self.recipe.release.clone(),
            packages: self.recipe.packages.clone(),
            recipe_version: RECIPE_VERSION,
            kernel_version: kver,
            kernel: "vmlinuz".into(),
            initrd: "initrd.gz".into(),
            disk: "disk.ext4".into(),
            disk_format: "raw".into(),
            rootfs: "rootfs".into(),
            ssh_user: "root".into(),
            ssh_key: "ssh/id_ed25519".into(),
            ssh_host_key: "ssh/ssh_host_ed25519_key.pub".into(),
            console: arch.console().into(),
            built_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            build_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        };
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        write_file(&self.work.join("image.json"), text.as_bytes(), 0o644)?;
        Ok(manifest)
    }

    /// Install the host tools the build needs and lacks.
    fn host_tools(&mut self) -> Result<(), ImageError> {
        let arch = self.recipe.arch;
        let mut tools: Vec<(String, &str)> = vec![
            ("debootstrap".into(), "debootstrap"),
            ("cpio".into(), "cpio"),
            ("depmod".into(), "kmod"),
            ("modprobe".into(), "kmod"),
            ("mke2fs".into(), "e2fsprogs"),
            ("ssh-keygen".into(), "openssh-client"),
            ("gzip".into(), "gzip"),
        ];
        if Arch::host() != Some(arch) {
            tools.push((format!("{}-static", arch.binfmt()), "qemu-user-static"));
            tools.push(("update-binfmts".into(), "binfmt-support"));
        }
        for tool in ["apt-get", "dpkg-deb", "chroot", "mount", "umount"] {
            if which(tool).is_none() {
                return Err(ImageError::Step {
                    step: "find the host tools".into(),
                    reason: format!("`{tool}` is missing: image build needs a Debian host"),
                });
            }
        }
        let missing: BTreeSet<&str> = tools
            .iter()
            .filter(|(t, _)| which(t).is_none())
            .map(|(_, p)| *p)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let list: Vec<&str> = missing.into_iter().collect();
        (self.progress)(&format!("      apt-get install {}", list.join(" ")));
        let mut update = apt_command();
        update.arg("update").arg("-q");
        self.exec("update the host's package lists", &mut update)?;
        let mut install = apt_command();
        install
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&list);
        self.exec("install the host tools", &mut install)
    }

    /// In the new root: the recipe's packages, and the kernel package downloaded (not
    /// installed). Returns the kernel .deb's path.
    fn chroot_stage(&mut self) -> Result<PathBuf, ImageError> {
        let r = self.rootfs.clone();
        write_file(
            &r.join("usr/sbin/policy-rc.d"),
            b"#!/bin/sh\nexit 101\n",
            0o755,
        )?;
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        let guest_resolv = r.join("etc/resolv.conf");
        let _ = std::fs::remove_file(&guest_resolv);
        write_file(&guest_resolv, &resolv, 0o644)?;
        ensure_binfmt(self.recipe.arch, self)?;
        let mounts = ChrootMounts::mount(&r, self)?;
        let res = self.chroot_work(&r);
        mounts.unmount(self)?;
        let deb = res?;
        let _ = std::fs::remove_file(&guest_resolv);
        write_file(&guest_resolv, b"nameserver 10.0.2.3\n", 0o644)?;
        Ok(deb)
    }

    fn chroot_work(&mut self, r: &Path) -> Result<PathBuf, ImageError> {
        let lists = r.join("var/lib/apt/lists");
        let has_lists = std::fs::read_dir(&lists)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
            })
            .unwrap_or(false);
        if !has_lists {
            let mut c = chroot(r, &["apt-get", "update", "-q"]);
            self.exec("update the guest's package lists", &mut c)?;
        }
        if !self.recipe.packages.is_empty() {
            let mut args = vec!["apt-get", "install", "-y", "-q", "--no-install-recommends"];
            args.extend(self.recipe.packages.iter().map(String::as_str));
            let mut c = chroot(r, &args);
            self.exec("install the recipe's packages in the guest", &mut c)?;
        }
        let meta = format!("linux-image-{}", self.recipe.arch.debian());
        let mut c = chroot(r, &["apt-cache", "depends", &meta]);
        let deps = self.capture("find the kernel package", &mut c)?;
        let pkg = deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|p| p.starts_with("linux-image-"))
            .ok_or_else(|| ImageError::Step {
                step: "find the kernel package".into(),
                reason: format!("`apt-cache depends {meta}` names no linux-image package:\n{deps}"),
            })?
            .to_string();
        let dl = r.join("tmp/adaptest-kernel");
        mkdir(&dl)?;
        let script = format!("cd /tmp/adaptest-kernel && apt-get download -q {pkg}");
        let mut c = chroot(r, &["sh", "-c", &script]);
        self.exec("download the kernel package", &mut c)?;
        let mut c = chroot(r, &["apt-get", "clean"]);
        self.exec("clean the guest's package cache", &mut c)?;
        let deb = std::fs::read_dir(&dl)
            .map_err(|source| ImageError::Io {
                op: "list",
                path: dl.clone(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| ImageError::Step {
                step: "download the kernel package".into(),
                reason: format!("no .deb for {pkg} in {}", dl.display()),
            })?;
        let dest = self.work.join("kernel.deb");
        rename(&deb, &dest)?;
        let _ = std::fs::remove_dir_all(&dl);
        Ok(dest)
    }

    /// Extract the kernel package: vmlinuz into the image, modules into the root (with
    /// modules.dep, so `modprobe` works in the guest). Returns the kernel release.
    fn kernel(&mut self, deb: &Path) -> Result<String, ImageError> {
        let x = self.work.join("kernel");
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(deb).arg(&x);
        self.exec("extract the kernel package", &mut c)?;
        let boot = x.join("boot");
        let vmlinuz = std::fs::read_dir(&boot)
            .map_err(|source| ImageError::Io {
                op: "list",
                path: boot.clone(),
                source,
            })?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("vmlinuz-") || n.starts_with("vmlinux-"))
            .ok_or_else(|| ImageError::Step {
                step: "extract the kernel".into(),
                reason: format!("no vmlinuz in {}", boot.display()),
            })?;
        let kver = vmlinuz
            .split_once('-')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        copy(&boot.join(&vmlinuz), &self.work.join("vmlinuz"))?;
        let src = x.join("lib/modules").join(&kver);
        let src = if src.exists() {
            src
        } else {
            x.join("usr/lib/modules").join(&kver)
        };
        let dst_parent = self.rootfs.join("usr/lib/modules");
        mkdir(&dst_parent)?;
        let dst = dst_parent.join(&kver);
        if dst.exists() {
            remove_tree(&dst)?;
        }
        rename(&src, &dst)?;
        let mut c = Command::new("depmod");
        c.arg("-b").arg(&self.rootfs).arg(&kver);
        self.exec("index the kernel modules (depmod)", &mut c)?;
        remove_tree(&x)?;
        let _ = std::fs::remove_file(deb);
        Ok(kver)
    }

    /// Hostname, hosts, init, sshd with generated keys, root's authorized key.
    fn configure(&mut self) -> Result<(), ImageError> {
        let r = self.rootfs.clone();
        write_file(&r.join("etc/hostname"), b"adaptest-guest\n", 0o644)?;
        write_file(&r.join("etc/hosts"), HOSTS.as_bytes(), 0o644)?;
        write_file(
            &r.join("etc/fstab"),
            b"# The root is mounted by the adaptest initramfs.\n",
            0o644,
        )?;
        write_file(&r.join("sbin/adaptest-init"), GUEST_INIT.as_bytes(), 0o755)?;
        write_file(&r.join("etc/inittab"), INITTAB.as_bytes(), 0o644)?;
        write_file(
            &r.join("etc/ssh/sshd_config.d/adaptest.conf"),
            SSHD_CONFIG.as_bytes(),
            0o644,
        )?;
        let info = format!(
            "name={}\nhash={}\narch={}\nrelease={}\npackages={}\n",
            self.recipe.name,
            self.recipe.hash(),
            self.recipe.arch,
            self.recipe.release,
            self.recipe.packages.join(",")
        );
        write_file(&r.join("etc/adaptest-image"), info.as_bytes(), 0o644)?;
        // root's login shell: /bin/sh (dash). sshd starts every command through it, and bash
        // (which also reads ~/.bashrc when started by sshd) is the slowest program to start on
        // an emulated guest. `bash` is still installed for whoever wants it.
        let passwd = r.join("etc/passwd");
        let text = String::from_utf8_lossy(&read(&passwd)?).into_owned();
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("root:") {
                Some(rest) if rest.ends_with(":/bin/bash") => {
                    format!(
                        "root:{}:/bin/sh\n",
                        &rest[..rest.len() - ":/bin/bash".len()]
                    )
                }
                _ => format!("{l}\n"),
            })
            .collect();
        write_file(&passwd, text.as_bytes(), 0o644)?;

        let ssh = self.work.join("ssh");
        mkdir(&ssh)?;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| ImageError::Io {
                op: "chmod",
                path: ssh.clone(),
                source,
            },
        )?;
        let comment = format!("adaptest@{}", self.recipe.dir_name());
        for (file, comment) in [
            ("id_ed25519", comment.as_str()),
            ("ssh_host_ed25519_key", ""),
        ] {
            let mut c = Command::new("ssh-keygen");
            c.args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(ssh.join(file));
            self.exec("generate an SSH key", &mut c)?;
        }
        let etc_ssh = r.join("etc/ssh");
        if let Ok(entries) = std::fs::read_dir(&etc_ssh) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let host_key = read(&ssh.join("ssh_host_ed25519_key"))?;
        let host_pub = read(&ssh.join("ssh_host_ed25519_key.pub"))?;
        write_file(&etc_ssh.join("ssh_host_ed25519_key"), &host_key, 0o600)?;
        write_file(&etc_ssh.join("ssh_host_ed25519_key.pub"), &host_pub, 0o644)?;
        let client_pub = read(&ssh.join("id_ed25519.pub"))?;
        let dot_ssh = r.join("root/.ssh");
        mkdir(&dot_ssh)?;
        std::fs::set_permissions(&dot_ssh, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| ImageError::Io {
                op: "chmod",
                path: dot_ssh.clone(),
                source,
            },
        )?;
        write_file(&dot_ssh.join("authorized_keys"), &client_pub, 0o600)?;
        Ok(())
    }

    /// A gzip'd newc cpio: static busybox, `/init`, the modules and their load order.
    fn initramfs(&mut self, kver: &str) -> Result<(), ImageError> {
        let stage = self.work.join("initramfs");
        if stage.exists() {
            remove_tree(&stage)?;
        }
        for d in ["bin", "dev", "proc", "sys", "newroot", "lib/modules"] {
            mkdir(&stage.join(d))?;
        }
        copy(&self.rootfs.join("bin/busybox"), &stage.join("bin/busybox"))?;
        write_file(&stage.join("init"), INITRAMFS_INIT.as_bytes(), 0o755)?;
        let console = stage.join("dev/console");
        let c_path =
            std::ffi::CString::new(console.as_os_str().as_encoded_bytes()).expect("no NUL in path");
        // SAFETY: mknod(2) with a valid NUL-terminated path; creates a character device node.
        let rc =
            unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(5, 1)) };
        if rc != 0 {
            return Err(ImageError::Io {
                op: "create the console node",
                path: console,
                source: std::io::Error::last_os_error(),
            });
        }

        let mut order: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        for (module, required) in REQUIRED_MODULES
            .iter()
            .map(|m| (*m, true))
            .chain(OPTIONAL_MODULES.iter().map(|m| (*m, false)))
        {
            let mut c = Command::new("modprobe");
            c.arg("-d")
                .arg(&self.rootfs)
                .args(["-S", kver, "--show-depends", module]);
            let out = match self.capture(&format!("resolve module {module}"), &mut c) {
                Ok(o) => o,
                Err(e) if required => return Err(e),
                Err(_) => {
                    (self.progress)(&format!("      (no module {module} in this kernel)"));
                    continue;
                }
            };
            for line in out.lines() {
                let Some(path) = line.trim().strip_prefix("insmod ") else {
                    continue;
                };
                let path = PathBuf::from(path.trim());
                let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                if seen.insert(name.clone()) {
                    copy(&path, &stage.join("lib/modules").join(&name))?;
                    order.push(name);
                }
            }
        }
        let mut text = order.join("\n");
        text.push('\n');
        write_file(&stage.join("lib/modules/order"), text.as_bytes(), 0o644)?;

        let mut files = Vec::new();
        walk(&stage, Path::new("."), &mut files)?;
        files.sort();
        let cpio_path = self.work.join("initrd.cpio");
        let out = File::create(&cpio_path).map_err(|source| ImageError::Io {
            op: "create",
            path: cpio_path.clone(),
            source,
        })?;
        let mut c = Command::new("cpio");
        c.args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
            .current_dir(&stage)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| self.spawn_error("pack the initramfs", "cpio", e))?;
        let list: String = files.iter().map(|f| format!("{f}\n")).collect();
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(list.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.spawn_error("pack the initramfs", "cpio", e))?;
        if !out.status.success() {
            return Err(ImageError::Command {
                step: "pack the initramfs".into(),
                command: "cpio -o -H newc".into(),
                status: out.status.to_string(),
                tail: format!("\n{}", String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        let mut c = Command::new("gzip");
        c.args(["-9", "-n", "-f"]).arg(&cpio_path);
        self.exec("compress the initramfs", &mut c)?;
        rename(
            &self.work.join("initrd.cpio.gz"),
            &self.work.join("initrd.gz"),
        )?;
        remove_tree(&stage)
    }

    /// The root file system as a sparse ext4 image (`mke2fs -d`).
    fn disk(&mut self) -> Result<(), ImageError> {
        if mounted_under(&self.rootfs).next().is_some() {
            return Err(ImageError::Step {
                step: "write the disk image".into(),
                reason: format!("something is still mounted under {}", self.rootfs.display()),
            });
        }
        let used = tree_size(&self.rootfs);
        let size = (used + used / 5 + DISK_HEADROOM).div_ceil(64 << 20) * (64 << 20);
        let disk = self.work.join("disk.ext4");
        let f = File::create(&disk).map_err(|source| ImageError::Io {
            op: "create",
            path: disk.clone(),
            source,
        })?;
        f.set_len(size).map_err(|source| ImageError::Io {
            op: "size",
            path: disk.clone(),
            source,
        })?;
        drop(f);
        let mut c = Command::new("mke2fs");
        c.args(["-q", "-F", "-t", "ext4", "-L", "adaptest-root", "-m", "0"])
            .args(["-E", "root_owner=0:0"])
            .arg("-d")
            .arg(&self.rootfs)
            .arg(&disk);
        self.exec("write the disk image (mke2fs -d)", &mut c)
    }

    /// Run `cmd` with its output appended to build.log; on failure the error carries the tail.
    fn exec(&mut self, step: &str, cmd: &mut Command) -> Result<(), ImageError> {
        self.exec_inner(step, cmd, false).map(|_| ())
    }

    /// Like [`Self::exec`], returning stdout (stderr goes to the log).
    fn capture(&mut self, step: &str, cmd: &mut Command) -> Result<String, ImageError> {
        self.exec_inner(step, cmd, true)
    }

    fn exec_inner(
        &mut self,
        step: &str,
        cmd: &mut Command,
        capture: bool,
    ) -> Result<String, ImageError> {
        let shown = show_command(cmd);
        let _ = writeln!(self.log, "$ {shown}");
        let start = self.log.seek(SeekFrom::End(0)).unwrap_or(0);
        let log_out = self.log.try_clone().map_err(|source| ImageError::Io {
            op: "write",
            path: self.log_path.clone(),
            source,
        })?;
        let log_err = self.log.try_clone().map_err(|source| ImageError::Io {
            op: "write",
            path: self.log_path.clone(),
            source,
        })?;
        cmd.stdin(Stdio::null()).stderr(log_err);
        if capture {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(log_out);
        }
        let out = cmd
            .output()
            .map_err(|e| self.spawn_error(step, &shown, e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut tail = String::new();
        let mut f = File::open(&self.log_path).ok();
        if let Some(f) = f.as_mut() {
            let _ = f.seek(SeekFrom::Start(start));
            let _ = f.read_to_string(&mut tail);
        }
        tail.push_str(&String::from_utf8_lossy(&out.stdout));
        let lines: Vec<&str> = tail.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        Err(ImageError::Command {
            step: step.into(),
            command: shown,
            status: format!("{} (log: {})", out.status, self.log_path.display()),
            tail: if tail.is_empty() {
                String::new()
            } else {
                format!("\n{tail}")
            },
        })
    }

    fn spawn_error(&self, step: &str, command: &str, e: std::io::Error) -> ImageError {
        ImageError::Step {
            step: step.into(),
            reason: format!("cannot run `{command}`: {e}"),
        }
    }
}

/// `proc`, `sys` and `/dev` (bound) inside a root for chroot'ed apt; unmounted in reverse.
struct ChrootMounts {
    points: Vec<PathBuf>,
}

impl ChrootMounts {
    fn mount(root: &Path, b: &mut Builder<'_>) -> Result<ChrootMounts, ImageError> {
        let mut m = ChrootMounts { points: Vec::new() };
        let steps: [(&str, Vec<&str>); 3] = [
            ("proc", vec!["-t", "proc", "proc"]),
            ("sys", vec!["-t", "sysfs", "sysfs"]),
            ("dev", vec!["--bind", "/dev"]),
        ];
        for (dir, args) in steps {
            let point = root.join(dir);
            mkdir(&point)?;
            let mut c = Command::new("mount");
            c.args(args).arg(&point);
            if let Err(e) = b.exec(&format!("mount {dir} in the guest root"), &mut c) {
                let _ = m.unmount(b);
                return Err(e);
            }
            m.points.push(point);
        }
        Ok(m)
    }

    fn unmount(mut self, b: &mut Builder<'_>) -> Result<(), ImageError> {
        let points = std::mem::take(&mut self.points);
        let mut failed = None;
        for p in points.iter().rev() {
            let mut c = Command::new("umount");
            c.arg(p);
            if b.exec("unmount", &mut c).is_err() {
                let mut lazy = Command::new("umount");
                lazy.arg("-l").arg(p);
                if let Err(e) = b.exec("unmount (lazily)", &mut lazy) {
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

impl Drop for ChrootMounts {
    fn drop(&mut self) {
        // Only reached on an early return that skipped `unmount`: never leave /dev bound.
        for p in self.points.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// Make sure binfmt_misc runs `arch` binaries through qemu-user (needed for a foreign root).
fn ensure_binfmt(arch: Arch, b: &mut Builder<'_>) -> Result<(), ImageError> {
    if Arch::host() == Some(arch) {
        return Ok(());
    }
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    if !dir.join("status").exists() {
        let mut c = Command::new("mount");
        c.args(["-t", "binfmt_misc", "binfmt_misc"]).arg(dir);
        b.exec("mount binfmt_misc", &mut c)?;
    }
    let entry = dir.join(arch.binfmt());
    let enabled = || {
        std::fs::read_to_string(&entry)
            .map(|s| s.lines().next() == Some("enabled"))
            .unwrap_or(false)
    };
    if !enabled() {
        let mut c = Command::new("update-binfmts");
        c.args(["--enable", arch.binfmt()]);
        // "already enabled" is reported as a failure by some versions: the check below decides.
        let _ = b.exec("enable the binfmt entry", &mut c);
    }
    if enabled() {
        Ok(())
    } else {
        Err(ImageError::Step {
            step: format!("run {} binaries on this host", arch.name()),
            reason: format!(
                "{} is not registered and enabled in binfmt_misc (is qemu-user-static installed?)",
                arch.binfmt()
            ),
        })
    }
}

/// The Debian mirror of this host's apt sources (deb822 `.sources` or one-line `.list`), or
/// `$ADAPTEST_DEBIAN_MIRROR`. Prefers an entry whose suites include `release`.
fn debian_mirror(release: &str) -> Result<String, ImageError> {
    if let Ok(m) = std::env::var("ADAPTEST_DEBIAN_MIRROR")
        && !m.trim().is_empty()
    {
        return Ok(m.trim().to_string());
    }
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(d) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = d.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if f.extension().is_some_and(|e| e == "sources") {
            entries.extend(parse_deb822(&text));
        } else {
            entries.extend(parse_one_line(&text));
        }
    }
    let pick = entries
        .iter()
        .find(|(_, suites)| suites.iter().any(|s| s == release))
        .or_else(|| entries.iter().find(|(uri, _)| !uri.contains("security")));
    pick.map(|(uri, _)| uri.clone())
        .ok_or_else(|| ImageError::Step {
            step: "find a Debian mirror".into(),
            reason: "no `deb` entry in /etc/apt/sources.list or /etc/apt/sources.list.d/ (set \
                 ADAPTEST_DEBIAN_MIRROR)"
                .into(),
        })
}

/// (URI, suites) of every `Types: deb` stanza.
fn parse_deb822(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let words = || v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            match k.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "enabled" => enabled = v.trim() != "no",
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            for u in uris {
                out.push((u, suites.clone()));
            }
        }
    }
    out
}

/// (URI, [suite]) of every `deb URI suite …` line.
fn parse_one_line(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        // Options in brackets: `deb [arch=amd64 signed-by=…] URI suite comps`.
        let rest = if rest.starts_with('[') {
            rest.split_once(']').map_or("", |(_, r)| r.trim_start())
        } else {
            rest
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    out
}

fn apt_command() -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "DPkg::Lock::Timeout=600"]);
    c
}

/// `chroot ROOT CMD…` with a clean environment.
fn chroot(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    c.arg(root)
        .args([
            "/usr/bin/env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "DEBIAN_FRONTEND=noninteractive",
            "LC_ALL=C",
            "HOME=/root",
        ])
        .args(args);
    c
}

/// A command as it would be typed (for the log and errors).
fn show_command(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `tool` on PATH or in the sbin directories (which a non-login root shell may lack).
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Mount points under `dir` (from /proc/self/mountinfo), deepest first.
fn mounted_under(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount(p)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.into_iter()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Remove a directory tree, first unmounting anything mounted below it; refuses (rather than
/// deleting through a bind mount of /dev) when something stays mounted.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    for p in mounted_under(dir) {
        let _ = Command::new("umount").arg(&p).status();
        if mounted_under(&p).next().is_some() {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
    }
    if let Some(p) = mounted_under(dir).next() {
        return Err(ImageError::Step {
            step: format!("remove {}", dir.display()),
            reason: format!("{} is still mounted", p.display()),
        });
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ImageError::Io {
            op: "remove",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Relative paths of everything under `base/rel`, for cpio (`./bin`, `./bin/busybox`, …).
fn walk(base: &Path, rel: &Path, out: &mut Vec<String>) -> Result<(), ImageError> {
    let dir = base.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|source| ImageError::Io {
        op: "list",
        path: dir.clone(),
        source,
    })?;
    for e in entries.flatten() {
        let r = rel.join(e.file_name());
        out.push(r.to_string_lossy().into_owned());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(base, &r, out)?;
        }
    }
    Ok(())
}

/// Bytes used by the files under `dir` (not following symlinks).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            }
            total += m.len().max(4096);
        }
    }
    total
}

fn mkdir(p: &Path) -> Result<(), ImageError> {
    std::fs::create_dir_all(p).map_err(|source| ImageError::Io {
        op: "create",
        path: p.to_path_buf(),
        source,
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::rename(from, to).map_err(|source| ImageError::Io {
        op: "move",
        path: from.to_path_buf(),
        source,
    })
}

fn copy(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|source| ImageError::Io {
            op: "copy",
            path: from.to_path_buf(),
            source,
        })
}

fn read(p: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(p).map_err(|source| ImageError::Io {
        op: "read",
        path: p.to_path_buf(),
        source,
    })
}

/// Write a file (parents created) with `mode`, replacing a symlink or file that was there.
fn write_file(p: &Path, bytes: &[u8], mode: u32) -> Result<(), ImageError> {
    if let Some(parent) = p.parent() {
        mkdir(parent)?;
    }
    if p.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        let _ = std::fs::remove_file(p);
    }
    let io = |source| ImageError::Io {
        op: "write",
        path: p.to_path_buf(),
        source,
    };
    std::fs::write(p, bytes).map_err(io)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        ImageError::Io {
            op: "chmod",
            path: p.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n";
        let e = parse_deb822(deb822);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "http://mirror.example/debian");
        assert!(e[0].1.contains(&"bookworm".to_string()));
        let one = "# deb http://old/ x\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main\n\
                   deb-src http://m/debian bookworm main\n";
        assert_eq!(
            parse_one_line(one),
            vec![("http://m/debian".to_string(), vec!["bookworm".to_string()])]
        );
    }

    #[test]
    fn mountinfo_unescapes_octal() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/x\\134"), "/x\\");
    }
}
