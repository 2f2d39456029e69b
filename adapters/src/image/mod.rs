//! Guest images for `qemu-system` targets: what a built image holds (`image.json`), where images
//! live (`$ADAPTEST_CACHE/images/<name>-<hash>/`), finding one by name, and building one
//! ([`build`]).
//!
//! An image is keyed by a hash of its recipe (arch, Debian release, extra packages, recipe
//! version), so the same recipe is built once per machine and every later `image build` is a
//! cache hit. A directory counts as an image only once its `image.json` exists: the build writes
//! it last, then renames the whole work directory into place.
//!
//! Architecture invariant: a built image is never modified afterwards. Targets boot it through a
//! per-run qcow2 overlay (disk root) or a read-only 9p export under a tmpfs overlay (9p root).

mod build;
mod guest_files;

pub use build::{BuildOutcome, build};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bump when the build steps change what an image contains: old images stop matching.
pub const RECIPE_VERSION: u32 = 2;
/// Version of the `image.json` layout.
pub const MANIFEST_FORMAT: u32 = 1;
/// The Debian release built when none is given.
pub const DEFAULT_RELEASE: &str = "bookworm";

/// A guest CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
    #[serde(rename = "loongarch64")]
    Loongarch64,
}

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Loongarch64];

    /// `x86_64`/`amd64`, `aarch64`/`arm64`, `loongarch64`/`loong64`.
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            "loongarch64" | "loong64" => Some(Arch::Loongarch64),
            _ => None,
        }
    }

    /// The name `uname -m` prints.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Loongarch64 => "loongarch64",
        }
    }

    /// The Debian architecture name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
            Arch::Loongarch64 => "loong64",
        }
    }

    /// The QEMU system emulator binary.
    pub fn qemu_system(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
            Arch::Loongarch64 => "qemu-system-loongarch64",
        }
    }

    /// The binfmt_misc entry (and `qemu-*-static` suffix) of this arch's user-mode emulator.
    pub fn binfmt(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-x86_64",
            Arch::Aarch64 => "qemu-aarch64",
            Arch::Loongarch64 => "qemu-loongarch64",
        }
    }

    /// The serial console device of the machine type adaptest uses.
    pub fn console(self) -> &'static str {
        match self {
            Arch::X86_64 | Arch::Loongarch64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// The architecture of this host, when it is one adaptest emulates.
    pub fn host() -> Option<Arch> {
        Arch::parse(std::env::consts::ARCH)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to build: the inputs of the image hash.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub arch: Arch,
    /// Debian release (`bookworm`).
    pub release: String,
    /// Extra Debian packages installed into the guest, sorted and deduplicated.
    pub packages: Vec<String>,
    /// The image's name; default `debian-<release>-<debian arch>`.
    pub name: String,
}

impl Recipe {
    /// A recipe from user input, checked; the error names the argument at fault.
    pub fn new(
        arch: Arch,
        release: Option<&str>,
        packages: &[String],
        name: Option<&str>,
    ) -> Result<Recipe, ImageError> {
        let release = release.unwrap_or(DEFAULT_RELEASE).to_string();
        if release.is_empty() || !release.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(ImageError::Recipe(format!(
                "--release: `{release}` is not a Debian release code name (e.g. bookworm)"
            )));
        }
        if arch == Arch::Loongarch64 {
            return Err(ImageError::Recipe(
                "--arch loongarch64: Debian publishes no loong64 port in the archive this machine \
                 reaches; boot your own openEuler/Loongnix kernel, initrd and disk instead (see \
                 README, \"LoongArch\")"
                    .into(),
            ));
        }
        let mut pkgs: Vec<String> = packages
            .iter()
            .flat_map(|p| p.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        for p in &pkgs {
            let ok = p.len() >= 2
                && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !ok {
                return Err(ImageError::Recipe(format!(
                    "--packages: `{p}` is not a Debian package name"
                )));
            }
        }
        pkgs.sort();
        pkgs.dedup();
        let name = match name {
            Some(n) => {
                let ok = n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
                if !ok {
                    return Err(ImageError::Recipe(format!(
                        "--name: `{n}` must be lowercase letters, digits, `.`, `_` and `-`"
                    )));
                }
                n.to_string()
            }
            None => format!("debian-{release}-{}", arch.debian()),
        };
        Ok(Recipe {
            arch,
            release,
            packages: pkgs,
            name,
        })
    }

    /// 12 hex digits of SHA-256 over everything that decides the image's content.
    pub fn hash(&self) -> String {
        let text = format!(
            "adaptest-image\nrecipe_version={RECIPE_VERSION}\narch={}\nrelease={}\npackages={}\n",
            self.arch.name(),
            self.release,
            self.packages.join(",")
        );
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// `<name>-<hash>`: the image's directory under `images/`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.hash())
    }

    /// The `adaptest image build` arguments that rebuild this recipe.
    pub fn command_line(&self) -> String {
        let mut s = format!("adaptest image build --arch {}", self.arch.name());
        if self.release != DEFAULT_RELEASE {
            s.push_str(&format!(" --release {}", self.release));
        }
        if !self.packages.is_empty() {
            s.push_str(&format!(" --packages {}", self.packages.join(",")));
        }
        if self.name != format!("debian-{}-{}", self.release, self.arch.debian()) {
            s.push_str(&format!(" --name {}", self.name));
        }
        s
    }
}

/// `image.json`: what a built image holds. Paths are relative to the image directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub hash: String,
    pub arch: Arch,
    pub release: String,
    pub packages: Vec<String>,
    pub recipe_version: u32,
    /// `uname -r` of the guest kernel.
    pub kernel_version: String,
    pub kernel: String,
    pub initrd: String,
    /// The root file system as an ext4 image (raw); targets boot it through a qcow2 overlay.
    pub disk: String,
    pub disk_format: String,
    /// The same root file system as a directory, for the 9p root (`adaptest.root=9p`).
    pub rootfs: String,
    pub ssh_user: String,
    /// The client key authorized for `ssh_user` in the guest.
    pub ssh_key: String,
    /// The guest's host public key (known_hosts entry).
    pub ssh_host_key: String,
    pub console: String,
    /// Seconds since the Unix epoch.
    pub built_at: u64,
    pub build_seconds: f64,
}

/// A built image on disk.
#[derive(Debug, Clone)]
pub struct Image {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Image {
    /// Read the image in `dir` (its `image.json`).
    pub fn load(dir: &Path) -> Result<Image, ImageError> {
        let path = dir.join("image.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ImageError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ImageError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if manifest.format > MANIFEST_FORMAT {
            return Err(ImageError::Manifest {
                path,
                reason: format!(
                    "format {} is newer than this adaptest understands ({MANIFEST_FORMAT})",
                    manifest.format
                ),
            });
        }
        Ok(Image {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn kernel(&self) -> PathBuf {
        self.path(&self.manifest.kernel)
    }

    pub fn initrd(&self) -> PathBuf {
        self.path(&self.manifest.initrd)
    }

    pub fn disk(&self) -> PathBuf {
        self.path(&self.manifest.disk)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path(&self.manifest.rootfs)
    }

    pub fn ssh_key(&self) -> PathBuf {
        self.path(&self.manifest.ssh_key)
    }

    /// The guest's host public key line (`ssh-ed25519 AAAA… comment`).
    pub fn host_key(&self) -> Result<String, ImageError> {
        let p = self.path(&self.manifest.ssh_host_key);
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|source| ImageError::Io {
                op: "read",
                path: p,
                source,
            })
    }

    /// `<name>-<hash>`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.manifest.name, self.manifest.hash)
    }
}

/// Where images live under a cache directory.
pub fn images_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("images")
}

/// Every complete image under the cache, newest first.
pub fn list(cache_dir: &Path) -> Vec<Image> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(images_dir(cache_dir)) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if let Ok(img) = Image::load(&e.path()) {
            out.push(img);
        }
    }
    out.sort_by(|a, b| {
        b.manifest
            .built_at
            .cmp(&a.manifest.built_at)
            .then_with(|| a.dir.cmp(&b.dir))
    });
    out
}

/// The built image of `recipe`, if there is one.
pub fn find_built(recipe: &Recipe, cache_dir: &Path) -> Option<Image> {
    Image::load(&images_dir(cache_dir).join(recipe.dir_name())).ok()
}

/// Find the image a plan names: a directory path (containing `/`), a full `<name>-<hash>`, or a
/// name (the most recently built image of that name).
pub fn resolve(spec: &str, cache_dir: &Path) -> Result<Image, ImageError> {
    if spec.contains('/') {
        return Image::load(Path::new(spec));
    }
    let all = list(cache_dir);
    let hit = all
        .iter()
        .find(|i| i.id() == spec)
        .or_else(|| all.iter().find(|i| i.manifest.name == spec));
    match hit {
        Some(i) => Ok(i.clone()),
        None => Err(ImageError::NotFound {
            spec: spec.to_string(),
            searched: images_dir(cache_dir),
            available: if all.is_empty() {
                "none".into()
            } else {
                all.iter().map(Image::id).collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

/// A failure to find, read or build an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "no image `{spec}` in {searched} (available: {available}); build one with `adaptest image build --arch …`"
    )]
    NotFound {
        spec: String,
        searched: PathBuf,
        available: String,
    },
    #[error("failed to read the image manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("invalid image recipe: {0}")]
    Recipe(String),
    #[error("failed to {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image build needs root (debootstrap, chroot and mounts); run it as root or with sudo")]
    NotRoot,
    #[error("failed to {step}: `{command}` {status}{tail}")]
    Command {
        step: String,
        command: String,
        status: String,
        /// The last lines of the command's output, prefixed with a newline.
        tail: String,
    },
    #[error("failed to {step}: {reason}")]
    Step { step: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_hash_ignores_package_order_and_duplicates() {
        let a = Recipe::new(
            Arch::Aarch64,
            None,
            &["redis-server,curl".into(), "curl".into()],
            None,
        )
        .unwrap();
        let b = Recipe::new(
            Arch::Aarch64,
            Some("bookworm"),
            &["curl".into(), "redis-server".into()],
            None,
        )
        .unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 12);
        assert_eq!(a.name, "debian-bookworm-arm64");
        let c = Recipe::new(Arch::X86_64, None, &["curl".into()], None).unwrap();
        assert_ne!(a.hash(), c.hash());
        assert_eq!(
            a.command_line(),
            "adaptest image build --arch aarch64 --packages curl,redis-server"
        );
    }

    #[test]
    fn recipe_refuses_bad_input() {
        assert!(Recipe::new(Arch::X86_64, Some("Bookworm!"), &[], None).is_err());
        assert!(Recipe::new(Arch::X86_64, None, &["rm -rf".into()], None).is_err());
        assert!(Recipe::new(Arch::X86_64, None, &[], Some("../x")).is_err());
        let e = Recipe::new(Arch::Loongarch64, None, &[], None).unwrap_err();
        assert!(e.to_string().contains("loong64"), "{e}");
    }

    #[test]
    fn arch_names() {
        for a in Arch::ALL {
            assert_eq!(Arch::parse(a.name()), Some(a));
            assert_eq!(Arch::parse(a.debian()), Some(a));
        }
        assert_eq!(Arch::parse("riscv64"), None);
    }

    #[test]
    fn resolve_reports_what_exists() {
        let dir = std::env::temp_dir().join(format!("adaptest-img-{}", std::process::id()));
        let e = resolve("nope", &dir).unwrap_err().to_string();
        assert!(
            e.contains("no image `nope`") && e.contains("available: none"),
            "{e}"
        );
    }
}
