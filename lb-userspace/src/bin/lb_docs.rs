//! `lb-docs OUT_DIR`: writes the man pages of `lb` (`man/lb.1`, one `lb-<command>.1` per
//! subcommand) and its shell completions (`completions/lb.bash`, `_lb` for zsh, `lb.fish`),
//! all generated from the clap definitions in `lb::cli`, so they say what the binary accepts.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: lb-docs OUT_DIR (writes OUT_DIR/man and OUT_DIR/completions)");
    };
    let out = PathBuf::from(out);
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let cmd = lb::cli::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).with_context(|| format!("writing man pages to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        clap_complete::generate_to(shell, &mut cmd, "lb", &completions)
            .with_context(|| format!("writing the {shell} completion to {}", completions.display()))?;
    }
    println!("wrote {} and {}", man.display(), completions.display());
    Ok(())
}
