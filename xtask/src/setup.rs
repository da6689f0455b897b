//! `cargo xtask setup`: everything a fresh Debian 12 machine needs to build and test the
//! project. Idempotent: each step checks first and skips what is already there.
//!
//! Steps: Debian packages; the nightly toolchain; rust-src for it (eBPF needs
//! `-Z build-std=core`); bpf-linker linked against the nightly's own libLLVM (see
//! ../shared/toolchain/README.md); one build of the workspace, which compiles the eBPF object.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{
    self, cargo, cargo_bin_dir, is_executable, is_root, output, root, try_output, which,
};

/// Debian packages the tests, the demo and the benchmark use (nginx is handled apart).
const PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "bpftool",
    "tcpdump",
    "iputils-ping",
    "socat",
    "nftables",
    "netsniff-ng",
    "iperf3",
];
/// nginx-light if the archive has it, else nginx; either one counts as installed.
const NGINX: &[&str] = &["nginx-light", "nginx"];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-deb for `cargo xtask package` (builds with --locked on rustc 1.95).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Offline rust-src for exactly one nightly, relative to the workspace root.
const RUST_SRC_FALLBACK: &str =
    "../shared/toolchain/rust-src-library-1.97.0-nightly-e50aa6fba.tar.xz";
const RUST_SRC_FALLBACK_COMMIT: &str = "e50aa6fba";

pub fn run() -> Result<()> {
    let start = Instant::now();
    step("Debian packages", debian_packages)?;
    step("nightly toolchain", nightly_toolchain)?;
    step("nightly rust-src", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    step("cargo-deb", cargo_deb)?;
    step("build workspace", build_workspace)?;
    println!("==> setup: done in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

fn step(name: &str, f: fn() -> Result<()>) -> Result<()> {
    println!("==> setup: {name}");
    let start = Instant::now();
    f().with_context(|| format!("setup step '{name}' failed"))?;
    println!("    {name}: ok ({:.1}s)", start.elapsed().as_secs_f64());
    Ok(())
}

// ---- Debian packages ----------------------------------------------------------------------

fn debian_packages() -> Result<()> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    let nginx = NGINX.iter().copied().find(|p| dpkg_installed(p));
    if missing.is_empty()
        && let Some(nginx) = nginx
    {
        println!(
            "    installed already: {} {nginx}; skipping apt-get",
            PACKAGES.join(" ")
        );
        return Ok(());
    }
    if !is_root() {
        let mut all = missing.clone();
        if nginx.is_none() {
            all.push("nginx-light");
        }
        bail!(
            "Debian packages missing ({}); installing them needs root",
            all.join(" ")
        );
    }

    // A failing extra source makes `apt-get update` exit non-zero although the Debian lists
    // were refreshed; go on, and let the install say whether something is really missing.
    if let Err(err) = util::run(apt_get().arg("update")) {
        println!("    warning: {err:#}; trying the install anyway");
    }
    if nginx.is_none() {
        missing.push(nginx_package()?);
    }
    println!("    installing: {}", missing.join(" "));
    util::run(
        apt_get()
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;

    let still: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !still.is_empty() {
        bail!(
            "apt-get reported success but these are not installed: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        // Wait for a concurrent apt/dpkg (e.g. unattended-upgrades on a fresh VM).
        .args(["-o", "DPkg::Lock::Timeout=300"]);
    cmd
}

fn dpkg_installed(pkg: &str) -> bool {
    try_output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|status| status_is_installed(&status))
}

/// `dpkg-query -f='${Status}'` prints "want flag status", e.g. "install ok installed".
fn status_is_installed(status: &str) -> bool {
    status.split_whitespace().last() == Some("installed")
}

/// nginx-light when the archive has a candidate for it (ask after `apt-get update`), else nginx.
fn nginx_package() -> Result<&'static str> {
    let policy = output(Command::new("apt-cache").args(["policy", NGINX[0]]))?;
    if has_candidate(&policy) {
        Ok(NGINX[0])
    } else {
        println!("    {} is not in the archive; using {}", NGINX[0], NGINX[1]);
        Ok(NGINX[1])
    }
}

/// `apt-cache policy PKG` prints nothing for an unknown package and "Candidate: (none)" for one
/// that cannot be installed.
fn has_candidate(policy: &str) -> bool {
    policy
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Candidate:"))
        .any(|c| !c.trim().is_empty() && c.trim() != "(none)")
}

// ---- nightly toolchain and rust-src -------------------------------------------------------

fn nightly_toolchain() -> Result<()> {
    let list = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if has_nightly(&list) {
        println!("    nightly toolchain present; skipping install");
    } else {
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let version = output(Command::new("rustc").args(["+nightly", "-V"]))?;
    println!("    {}", version.trim());
    Ok(())
}

/// Whether `rustup toolchain list` has the toolchain `+nightly` names (`nightly-<host>`, not a
/// dated `nightly-2026-05-19-<host>`).
fn has_nightly(list: &str) -> bool {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| {
            name == "nightly"
                || name
                    .strip_prefix("nightly-")
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn rust_src() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    let core = sysroot.join("lib/rustlib/src/rust/library/core");
    if core.is_dir() {
        println!("    rust-src present ({}); skipping", core.display());
        return Ok(());
    }
    // `timeout` so that a network that drops packets cannot hang CI; failure falls back below.
    let added = util::run(Command::new("timeout").args([
        "600",
        "rustup",
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]));
    if let Err(err) = added {
        println!("    rustup could not add rust-src ({err:#}); trying the offline copy");
        unpack_rust_src_fallback(&sysroot)?;
    }
    if !core.is_dir() {
        bail!(
            "rust-src still missing after installing it: no {}",
            core.display()
        );
    }
    Ok(())
}

fn unpack_rust_src_fallback(sysroot: &Path) -> Result<()> {
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let hash = commit_hash(&version).context("`rustc +nightly -vV` printed no commit-hash")?;
    if !hash.starts_with(RUST_SRC_FALLBACK_COMMIT) {
        bail!(
            "rustup failed, and the offline rust-src is for nightly {RUST_SRC_FALLBACK_COMMIT}, \
             not this nightly ({hash})"
        );
    }
    let tarball = root().join(RUST_SRC_FALLBACK);
    if !tarball.is_file() {
        bail!(
            "rustup failed, and the offline rust-src {} does not exist",
            tarball.display()
        );
    }
    let dest = sysroot.join("lib/rustlib/src");
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    util::run(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&dest),
    )
}

fn commit_hash(version_verbose: &str) -> Option<&str> {
    version_verbose
        .lines()
        .find_map(|line| line.strip_prefix("commit-hash:"))
        .map(str::trim)
}

// ---- bpf-linker ---------------------------------------------------------------------------

fn bpf_linker() -> Result<()> {
    let libdir = nightly_sysroot()?.join("lib");
    let libdir_real = libdir
        .canonicalize()
        .with_context(|| format!("no {}", libdir.display()))?;

    match find_bpf_linker() {
        Some(bin) => match llvm_inside(&bin, &libdir_real) {
            Ok(lib) => {
                println!(
                    "    {} uses {} (nightly's LLVM); skipping",
                    bin.display(),
                    lib.display()
                );
                return Ok(());
            }
            Err(why) => println!("    {}: {why:#}; reinstalling", bin.display()),
        },
        None => println!("    bpf-linker not found; installing"),
    }

    let mut names: Vec<String> = std::fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let llvm = LlvmLib::find(&names).with_context(|| {
        format!(
            "no libLLVM-NN-rust-*.so in the nightly sysroot {}",
            libdir.display()
        )
    })?;
    let dir = libdir
        .to_str()
        .context("nightly sysroot path is not UTF-8")?;
    if dir.contains(char::is_whitespace) {
        bail!("nightly sysroot path {dir:?} contains whitespace, which RUSTFLAGS cannot carry");
    }

    let mut cmd = Command::new("cargo");
    // Outside the workspace so that its .cargo/config.toml does not apply.
    cmd.current_dir(std::env::temp_dir())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", llvm.rustflags(dir))
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .args(["--no-default-features", "--features", &llvm.features()]);
    util::run(&mut cmd)?;

    let bin = find_bpf_linker()
        .context("bpf-linker installed, but not found on PATH nor in ~/.cargo/bin")?;
    let lib =
        llvm_inside(&bin, &libdir_real).context("bpf-linker was installed but is not usable")?;
    println!("    installed {} using {}", bin.display(), lib.display());
    Ok(())
}

/// cargo-deb CARGO_DEB_VERSION (`cargo deb --version` prints `cargo-deb X.Y.Z`).
fn cargo_deb() -> Result<()> {
    let installed = util::output(Command::new("cargo").args(["deb", "--version"])).unwrap_or_default();
    if installed.split_whitespace().nth(1) == Some(CARGO_DEB_VERSION) {
        println!("    cargo-deb {CARGO_DEB_VERSION} installed already; skipping");
        return Ok(());
    }
    let mut cmd = Command::new("cargo");
    // Outside the workspace so that its .cargo/config.toml does not apply.
    cmd.current_dir(std::env::temp_dir())
        .args(["install", "cargo-deb", "--version", CARGO_DEB_VERSION, "--locked", "--force"]);
    util::run(&mut cmd)
}

/// bpf-linker on PATH, else in `~/.cargo/bin`.
fn find_bpf_linker() -> Option<PathBuf> {
    which("bpf-linker").or_else(|| {
        let bin = cargo_bin_dir()?.join("bpf-linker");
        is_executable(&bin).then_some(bin)
    })
}

/// The libLLVM that `bin` loads, when it lies inside `libdir` (canonical); otherwise why not.
fn llvm_inside(bin: &Path, libdir: &Path) -> Result<PathBuf> {
    // Without LD_LIBRARY_PATH (cargo run sets one): the binary must find its LLVM by itself.
    let ldd = output(Command::new("ldd").arg(bin).env_remove("LD_LIBRARY_PATH"))?;
    match ldd_llvm(&ldd) {
        None => bail!("not linked against a shared libLLVM"),
        Some((name, None)) => bail!("{name} not found"),
        Some((_, Some(path))) => {
            let real = Path::new(path)
                .canonicalize()
                .with_context(|| format!("no {path}"))?;
            if real.starts_with(libdir) {
                Ok(PathBuf::from(path))
            } else {
                bail!(
                    "uses {path}, which is not in the nightly sysroot {}",
                    libdir.display()
                )
            }
        }
    }
}

/// From `ldd` output, the libLLVM line: its name and where it resolved (None: "not found").
fn ldd_llvm(ldd: &str) -> Option<(&str, Option<&str>)> {
    ldd.lines().find_map(|line| {
        let (name, rest) = line.trim().split_once(" => ")?;
        if !name.starts_with("libLLVM") {
            return None;
        }
        let path = rest.split(" (").next().unwrap_or(rest).trim();
        Some((
            name,
            (path != "not found" && !path.is_empty()).then_some(path),
        ))
    })
}

/// The LLVM shared library a toolchain ships in its sysroot's lib directory.
#[derive(Debug, PartialEq)]
struct LlvmLib {
    /// LLVM major version: bpf-linker's `llvm-NN` feature.
    major: u32,
    /// What follows `-l `: `dylib=LLVM-22-rust-1.97.0-nightly` for `libLLVM-22-rust-1.97.0-nightly.so`.
    link: String,
}

impl LlvmLib {
    /// Prefers `libLLVM-NN-rust-*.so` (linkable as `-l dylib=LLVM-NN-rust-*`); else the versioned
    /// `libLLVM.so.NN.M-rust-*`, linked by its exact file name.
    fn find(file_names: &[String]) -> Option<LlvmLib> {
        let plain = file_names.iter().find_map(|name| {
            let stem = name.strip_prefix("libLLVM-")?.strip_suffix(".so")?;
            let (major, rest) = stem.split_once('-')?;
            if !rest.starts_with("rust-") {
                return None;
            }
            Some(LlvmLib {
                major: major.parse().ok()?,
                link: format!("dylib=LLVM-{stem}"),
            })
        });
        plain.or_else(|| {
            file_names.iter().find_map(|name| {
                let version = name.strip_prefix("libLLVM.so.")?;
                if !version.contains("-rust-") {
                    return None;
                }
                let major = version.split(['.', '-']).next()?.parse().ok()?;
                Some(LlvmLib {
                    major,
                    link: format!("dylib:+verbatim={name}"),
                })
            })
        })
    }

    fn features(&self) -> String {
        format!("llvm-{},no-llvm-linking", self.major)
    }

    fn rustflags(&self, libdir: &str) -> String {
        format!(
            "-L native={libdir} -l {} -C link-arg=-Wl,-rpath,{libdir}",
            self.link
        )
    }
}

// ---- build --------------------------------------------------------------------------------

fn build_workspace() -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--workspace", "--all-targets"]);
    // bpf-linker may have just landed in ~/.cargo/bin, which PATH may lack.
    if which("bpf-linker").is_none()
        && let (Some(bin), Some(path)) = (cargo_bin_dir(), std::env::var_os("PATH"))
    {
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        dirs.push(bin);
        cmd.env("PATH", std::env::join_paths(dirs)?);
    }
    util::run(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn llvm_lib_from_this_nightly() {
        let lib = LlvmLib::find(&names(&[
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-b5a965480ee51f9a.so",
            "rustlib",
        ]))
        .unwrap();
        assert_eq!(
            lib,
            LlvmLib {
                major: 22,
                link: "dylib=LLVM-22-rust-1.97.0-nightly".into()
            }
        );
        assert_eq!(lib.features(), "llvm-22,no-llvm-linking");
        let nl = "/root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib";
        assert_eq!(
            lib.rustflags(nl),
            format!(
                "-L native={nl} -l dylib=LLVM-22-rust-1.97.0-nightly -C link-arg=-Wl,-rpath,{nl}"
            )
        );
    }

    #[test]
    fn llvm_lib_other_versions() {
        let lib = LlvmLib::find(&names(&["libLLVM-23-rust-1.99.0-nightly.so"])).unwrap();
        assert_eq!(
            lib,
            LlvmLib {
                major: 23,
                link: "dylib=LLVM-23-rust-1.99.0-nightly".into()
            }
        );
        let lib = LlvmLib::find(&names(&["libLLVM-21-rust-1.91.0-stable.so"])).unwrap();
        assert_eq!(lib.features(), "llvm-21,no-llvm-linking");
        // Only the versioned file: linked by exact name.
        let lib = LlvmLib::find(&names(&["libLLVM.so.22.1-rust-1.97.0-nightly"])).unwrap();
        assert_eq!(
            lib,
            LlvmLib {
                major: 22,
                link: "dylib:+verbatim=libLLVM.so.22.1-rust-1.97.0-nightly".into()
            }
        );
    }

    #[test]
    fn llvm_lib_absent() {
        assert_eq!(
            LlvmLib::find(&names(&["librustc_driver-x.so", "rustlib"])),
            None
        );
        assert_eq!(
            LlvmLib::find(&names(&["libLLVM-22.so", "libLLVM-x-rust-1.so"])),
            None
        );
    }

    #[test]
    fn ldd_parsing() {
        let ldd = "\tlinux-vdso.so.1 (0x00007f6f5eeff000)
\tlibLLVM.so.22.1-rust-1.97.0-nightly => /root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib/libLLVM.so.22.1-rust-1.97.0-nightly (0x00007f6f54400000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f6f5eece000)
";
        assert_eq!(
            ldd_llvm(ldd),
            Some((
                "libLLVM.so.22.1-rust-1.97.0-nightly",
                Some(
                    "/root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib/libLLVM.so.22.1-rust-1.97.0-nightly"
                )
            ))
        );
        let missing = "\tlibLLVM.so.22.1-rust-1.97.0-nightly => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n";
        assert_eq!(
            ldd_llvm(missing),
            Some(("libLLVM.so.22.1-rust-1.97.0-nightly", None))
        );
        assert_eq!(
            ldd_llvm("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n"),
            None
        );
    }

    #[test]
    fn llvm_inside_checks_the_sysroot() {
        // /bin/sh is not linked against libLLVM at all.
        let err = llvm_inside(Path::new("/bin/sh"), Path::new("/nonexistent")).unwrap_err();
        assert!(
            err.to_string()
                .contains("not linked against a shared libLLVM"),
            "{err}"
        );
    }

    #[test]
    fn dpkg_status() {
        assert!(status_is_installed("install ok installed"));
        assert!(status_is_installed("hold ok installed"));
        assert!(!status_is_installed("deinstall ok config-files"));
        assert!(!status_is_installed("unknown ok not-installed"));
        assert!(!status_is_installed(""));
    }

    #[test]
    fn apt_candidate() {
        let ok =
            "nginx-light:\n  Installed: (none)\n  Candidate: 1.22.1-9+deb12u11\n  Version table:\n";
        assert!(has_candidate(ok));
        assert!(!has_candidate(
            "nginx-light:\n  Installed: (none)\n  Candidate: (none)\n"
        ));
        assert!(!has_candidate("")); // unknown package: apt-cache prints nothing
    }

    #[test]
    fn nightly_in_toolchain_list() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n1.95.0-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list));
        assert!(!has_nightly("stable-x86_64-unknown-linux-gnu (default)\n"));
        assert!(!has_nightly(
            "nightly-2026-05-19-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_nightly("no installed toolchains\n"));
    }

    #[test]
    fn rustc_commit_hash() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\ncommit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a\ncommit-date: 2026-05-19\n";
        assert_eq!(
            commit_hash(vv),
            Some("e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a")
        );
        assert!(
            commit_hash(vv)
                .unwrap()
                .starts_with(RUST_SRC_FALLBACK_COMMIT)
        );
        assert_eq!(commit_hash("rustc 1.0\n"), None);
    }

    #[test]
    fn fallback_tarball_path_points_at_shared_toolchain() {
        let p = root().join(RUST_SRC_FALLBACK);
        assert!(p.ends_with("shared/toolchain/rust-src-library-1.97.0-nightly-e50aa6fba.tar.xz"));
    }
}
