//! Builds the XDP object (lb-ebpf for bpfel-unknown-none, on the nightly toolchain with
//! bpf-linker) and leaves it in OUT_DIR, where `dataplane` embeds it.
//! `cargo xtask setup` installs what this needs.

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-ebpf");
    // aya-build watches lb-ebpf only; the object also compiles lb-common (layouts, hashes), and
    // without this a change there would leave a stale program embedded in `lb`.
    println!("cargo:rerun-if-changed={}", concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-common"));
    // lb's `upgrade-test` feature builds the object with lb-ebpf's (a program that differs).
    let features: &[&str] = if std::env::var_os("CARGO_FEATURE_UPGRADE_TEST").is_some() { &["upgrade-test"] } else { &[] };
    aya_build::build_ebpf(
        [aya_build::Package { name: "lb-ebpf", root_dir: root, features, ..Default::default() }],
        aya_build::Toolchain::Nightly,
    )
}
