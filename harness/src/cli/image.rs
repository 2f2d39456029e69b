//! `adaptest image …`: build, find and list the guest images `qemu-system` targets boot.
//! The work is in `adaptest_adapters::image`; this module is argument parsing and printing.

use super::CliError;
use crate::engine::cache_dir;
use crate::exit_codes;
use adaptest_adapters::image::{self, Arch, ImageError, Recipe};
use clap::{Args, Subcommand, ValueEnum};

/// An `image` subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageCmdError {
    /// Building the image failed.
    #[error("image {name}")]
    Build {
        name: String,
        #[source]
        source: ImageError,
    },
    /// `image path` of an image that is not built.
    #[error("image {name} is not built in {}; build it with `{command}`", dir.display())]
    NotBuilt {
        name: String,
        dir: std::path::PathBuf,
        command: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a Debian guest image (debootstrap + Debian kernel + initramfs + SSH keys), or reuse
    /// the cached one with the same recipe. Prints the image directory on stdout.
    Build(RecipeArgs),
    /// Print the directory of an already built image (exit 3 when it is not built).
    Path(RecipeArgs),
    /// List the built images in the cache.
    List,
}

/// Architectures `image build` can make from the Debian archive.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BuildArch {
    #[value(name = "x86_64", alias = "amd64")]
    X86_64,
    #[value(name = "aarch64", alias = "arm64")]
    Aarch64,
    /// Not buildable here (no loong64 port in the archive); refused with an explanation.
    #[value(name = "loongarch64", alias = "loong64")]
    Loongarch64,
}

#[derive(Debug, Args)]
pub struct RecipeArgs {
    /// Guest architecture.
    #[arg(long, value_enum)]
    arch: BuildArch,
    /// Debian release.
    #[arg(long, default_value = image::DEFAULT_RELEASE)]
    release: String,
    /// Extra Debian packages for the guest, comma-separated or repeated.
    #[arg(long, value_name = "PKG,…")]
    packages: Vec<String>,
    /// Image name (default `debian-<release>-<debian arch>`); plans refer to it as `image = "…"`.
    #[arg(long)]
    name: Option<String>,
}

impl RecipeArgs {
    fn recipe(&self) -> Result<Recipe, ImageError> {
        let arch = match self.arch {
            BuildArch::X86_64 => Arch::X86_64,
            BuildArch::Aarch64 => Arch::Aarch64,
            BuildArch::Loongarch64 => Arch::Loongarch64,
        };
        Recipe::new(
            arch,
            Some(&self.release),
            &self.packages,
            self.name.as_deref(),
        )
    }
}

/// Run an `image` subcommand; returns the exit code.
pub fn run(cmd: ImageCommand) -> Result<i32, CliError> {
    match cmd {
        ImageCommand::Build(a) => build(&a),
        ImageCommand::Path(a) => path(&a),
        ImageCommand::List => Ok(list()),
    }
}

fn build(a: &RecipeArgs) -> Result<i32, CliError> {
    let recipe = a.recipe().map_err(CliError::invalid)?;
    let cache = cache_dir();
    let mut progress = |line: &str| eprintln!("image {}: {line}", recipe.dir_name());
    let out = image::build(&recipe, &cache, &mut progress).map_err(|source| {
        let invalid = matches!(source, ImageError::Recipe(_));
        let e = ImageCmdError::Build {
            name: recipe.dir_name(),
            source,
        };
        if invalid {
            CliError::invalid(e)
        } else {
            CliError::infra(e)
        }
    })?;
    let how = if out.cached { "cached" } else { "built" };
    eprintln!(
        "image {} {how} in {:.1}s: {}",
        out.image.id(),
        out.seconds,
        out.image.dir.display()
    );
    println!("{}", out.image.dir.display());
    Ok(exit_codes::OK)
}

fn path(a: &RecipeArgs) -> Result<i32, CliError> {
    let recipe = a.recipe().map_err(CliError::invalid)?;
    let img = image::find_built(&recipe, &cache_dir()).ok_or_else(|| {
        CliError::infra(ImageCmdError::NotBuilt {
            name: recipe.dir_name(),
            dir: image::images_dir(&cache_dir()),
            command: recipe.command_line(),
        })
    })?;
    println!("{}", img.dir.display());
    Ok(exit_codes::OK)
}

fn list() -> i32 {
    let images = image::list(&cache_dir());
    if images.is_empty() {
        eprintln!("no images in {}", image::images_dir(&cache_dir()).display());
    }
    for i in images {
        let m = &i.manifest;
        println!(
            "{:<40} {:<12} {:<9} kernel {:<18} packages [{}]  {}",
            i.id(),
            m.arch.name(),
            m.release,
            m.kernel_version,
            m.packages.join(","),
            i.dir.display()
        );
    }
    exit_codes::OK
}
