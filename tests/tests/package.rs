//! The Debian package `cargo xtask package` builds (target/debian/lb_*.deb; `cargo xtask test`
//! builds it first): it holds the binary, the systemd unit, the example config as the conffile
//! /etc/lb/lb.toml, /etc/default/lb, man pages and bash, zsh and fish completions generated
//! from the clap definitions; the unit passes `systemd-analyze verify` where that is available.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};
use lb_tests::{daemon::lb_binary, names};

/// What the package must hold, as `dpkg-deb -c` lists it.
const FILES: &[&str] = &[
    "./usr/bin/lb",
    "./usr/lib/systemd/system/lb.service",
    "./etc/lb/lb.toml",
    "./etc/default/lb",
    "./usr/share/man/man1/lb.1",
    "./usr/share/man/man1/lb-run.1",
    "./usr/share/man/man1/lb-detach.1",
    "./usr/share/man/man1/lb-backend-drain.1",
    "./usr/share/bash-completion/completions/lb",
    "./usr/share/zsh/vendor-completions/_lb",
    "./usr/share/fish/vendor_completions.d/lb.fish",
];

/// The package in target/debian (the newest, if several versions are there).
fn package() -> Result<PathBuf> {
    let debug = lb_binary()?;
    let target = debug.parent().and_then(Path::parent).context("lb is not in target/<profile>")?;
    let dir = target.join("debian");
    let debs = std::fs::read_dir(&dir).map(|entries| {
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("lb_")) && p.extension().is_some_and(|e| e == "deb"))
            .collect::<Vec<_>>()
    });
    let newest = debs.unwrap_or_default().into_iter().max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.with_context(|| format!("no lb_*.deb in {}: `cargo xtask package` builds it (`cargo xtask test` does first)", dir.display()))
}

/// Runs `program args`: its stdout, or an error with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A directory removed on drop, also when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(names::unique(tag));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_package_holds_the_binary_unit_conffiles_man_pages_and_completions() -> Result<()> {
    let deb = package()?;
    let deb_s = deb.to_string_lossy().to_string();
    let listing = run("dpkg-deb", &["-c", &deb_s])?;
    let paths: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    for file in FILES {
        ensure!(paths.contains(file), "{file} is not in {}:\n{listing}", deb.display());
    }
    ensure!(run("dpkg-deb", &["-f", &deb_s, "Package"])?.trim() == "lb", "the package is not named lb");
    let conffiles = run("dpkg-deb", &["--info", &deb_s, "conffiles"])?;
    ensure!(conffiles.lines().any(|l| l.trim() == "/etc/lb/lb.toml"), "/etc/lb/lb.toml is not a conffile: {conffiles}");

    // Its contents: the example config, a binary that runs, pages and completions of lb's commands.
    let root = TempDir::new("lb-deb")?;
    let root_s = root.0.to_string_lossy().to_string();
    run("dpkg-deb", &["-x", &deb_s, &root_s])?;
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lb.toml"))?;
    ensure!(std::fs::read_to_string(root.0.join("etc/lb/lb.toml"))? == example, "/etc/lb/lb.toml is not examples/lb.toml");
    let lb = root.0.join("usr/bin/lb").to_string_lossy().to_string();
    ensure!(run(&lb, &["--version"])?.starts_with("lb "), "the packaged lb does not run");
    let page = std::fs::read_to_string(root.0.join("usr/share/man/man1/lb-run.1"))?;
    ensure!(page.contains(".TH") && page.contains("state\\-dir"), "lb-run.1 is not the man page of `lb run`: {page}");
    let bash = std::fs::read_to_string(root.0.join("usr/share/bash-completion/completions/lb"))?;
    ensure!(bash.contains("detach") && bash.contains("complete "), "the bash completion does not complete lb's commands");

    // The unit, pointed at the unpacked binary (verify checks that ExecStart's program exists).
    match run("systemd-analyze", &["--version"]) {
        Err(e) => eprintln!("systemd-analyze is not available ({e:#}): the unit is not verified"),
        Ok(_) => {
            let unit = std::fs::read_to_string(root.0.join("usr/lib/systemd/system/lb.service"))?;
            ensure!(unit.contains("Type=notify") && unit.contains("ExecReload=/usr/bin/lb reload") && unit.contains("Restart=on-failure"), "{unit}");
            let here = root.0.join("lb.service");
            std::fs::write(&here, unit.replace("/usr/bin/lb", &lb))?;
            let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&here).output()?;
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            ensure!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {} {said}", out.status);
        }
    }
    Ok(())
}
