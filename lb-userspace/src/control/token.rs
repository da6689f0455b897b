//! The bearer token of the control endpoint: read once at start from `--control-token-file`,
//! which must be non-empty and not world-readable, and compared in constant time.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, bail};

pub struct Token(Vec<u8>);

impl Token {
    /// Reads the token (one line; surrounding whitespace and the final newline are dropped).
    pub fn load(path: &Path) -> anyhow::Result<Token> {
        let shown = path.display();
        let meta = fs::metadata(path).with_context(|| format!("cannot read the control token file {shown}"))?;
        if !meta.is_file() {
            bail!("the control token file {shown} is not a regular file");
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            bail!(
                "the control token file {shown} is world-readable (mode {mode:03o}): anyone on this host could \
                 read the token; run `chmod 600 {shown}` (owned by the user lb runs as) and start again"
            );
        }
        let text = fs::read_to_string(path).with_context(|| format!("cannot read the control token file {shown} (it must be UTF-8 text)"))?;
        let token = text.trim();
        if token.is_empty() {
            bail!(
                "the control token file {shown} is empty: write a long random token into it, e.g. \
                 `head -c 32 /dev/urandom | base64 > {shown}; chmod 600 {shown}`"
            );
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "the control token file {shown} must hold one token of printable ASCII without spaces \
                 (it goes in an `Authorization: Bearer TOKEN` header)"
            );
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    #[cfg(test)]
    pub fn of(text: &str) -> Token {
        Token(text.as_bytes().to_vec())
    }

    /// Whether an `Authorization` header value is `Bearer <this token>` (the scheme's case
    /// does not matter). The comparison takes a time that depends only on what was presented.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else { return false };
        let Some(presented) = bearer(value) else { return false };
        constant_time_eq(presented, &self.0)
    }
}

fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares every presented byte whatever the differences found, against the expected token
/// repeated, so neither where they differ nor the expected length shows in the time taken.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &b) in presented.iter().enumerate() {
        diff |= b ^ expected[i % expected.len()];
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_as_bearer_is_accepted() {
        let t = Token::of("s3cret-token");
        assert!(t.accepts(Some(b"Bearer s3cret-token")));
        assert!(t.accepts(Some(b"bearer s3cret-token")));
        assert!(!t.accepts(None));
        assert!(!t.accepts(Some(b"Bearer s3cret-toke")), "a prefix");
        assert!(!t.accepts(Some(b"Bearer s3cret-token2")), "longer");
        assert!(!t.accepts(Some(b"Bearer S3cret-token")), "case of the token matters");
        assert!(!t.accepts(Some(b"Basic s3cret-token")));
        assert!(!t.accepts(Some(b"Bearers3cret-token")));
        assert!(!t.accepts(Some(b"Bearer ")));
        assert!(!t.accepts(Some(b"s3cret-token")));
    }

    struct TempFile(std::path::PathBuf);
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    fn file(name: &str, text: &str, mode: u32) -> TempFile {
        let path = std::env::temp_dir().join(format!("lb-token-test-{}-{name}", std::process::id()));
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        TempFile(path)
    }

    #[test]
    fn a_token_file_must_be_private_and_hold_a_token() {
        let good = file("good", "abc123\n", 0o600);
        assert!(Token::load(&good.0).unwrap().accepts(Some(b"Bearer abc123")));

        let open = file("open", "abc123\n", 0o644);
        let err = format!("{:#}", Token::load(&open.0).err().unwrap());
        assert!(err.contains("world-readable") && err.contains("chmod 600"), "{err}");

        let empty = file("empty", " \n", 0o600);
        let err = format!("{:#}", Token::load(&empty.0).err().unwrap());
        assert!(err.contains("is empty") && err.contains("/dev/urandom"), "{err}");

        let spaced = file("spaced", "two words\n", 0o600);
        assert!(format!("{:#}", Token::load(&spaced.0).err().unwrap()).contains("without spaces"));

        let missing = std::env::temp_dir().join("lb-token-test-no-such-file");
        assert!(format!("{:#}", Token::load(&missing).err().unwrap()).contains("cannot read"));
    }
}
