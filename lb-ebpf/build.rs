use which::which;

/// Rebuild the object when bpf-linker changes (a rebuilt linker may emit different code).
fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
