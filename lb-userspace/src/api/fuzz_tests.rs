//! The admin protocol under hostile input (property tests; `cargo xtask fuzz` runs many more
//! cases): whatever bytes arrive, the daemon's reader answers Ok or a bounded error, never
//! panics, and a request it accepts means what it says.

use proptest::prelude::*;

use super::{MAX_REQUEST_BYTES, Request, parse_request};

/// Real requests, as the CLI sends them.
fn samples() -> Vec<String> {
    let addr = "10.0.0.1:80".parse().unwrap();
    [
        Request::Status,
        Request::Metrics,
        Request::Reload,
        Request::BackendAdd { service: "web".into(), backend: addr, weight: 3 },
        Request::BackendDrain { service: "web".into(), backend: addr, timeout_secs: Some(30) },
        Request::ServiceAdd { toml: "[[service]]\nname = \"x\"\n".into() },
        Request::Explain { service: "web".into(), client: "[fd00::1]:4000".parse().unwrap() },
    ]
    .iter()
    .map(|r| serde_json::to_string(r).unwrap())
    .collect()
}

proptest! {
    #[test]
    fn fuzz_any_bytes_are_answered_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_request(&bytes) {
            prop_assert!(format!("{e:#}").len() < 1024, "an error longer than the request it names");
        }
    }

    #[test]
    fn fuzz_mutated_requests_are_refused_or_mean_what_they_say(
        which in 0usize..7,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = samples()[which].clone().into_bytes();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(request) = parse_request(&bytes) {
            // Accepted: it round-trips, so the daemon acts on exactly what was sent.
            let again = serde_json::to_string(&request).unwrap();
            let reparsed = parse_request(again.as_bytes()).unwrap();
            prop_assert_eq!(format!("{reparsed:?}"), format!("{request:?}"));
        }
    }
}

#[test]
fn a_request_over_the_limit_is_refused_unparsed() {
    let mut huge = br#"{"cmd":"service_add","toml":""#.to_vec();
    huge.resize(MAX_REQUEST_BYTES + 1, b'a');
    let e = parse_request(&huge).expect_err("an oversized request").to_string();
    assert!(e.contains("longer than"), "{e}");
}

#[tokio::test]
async fn the_daemons_reader_stops_at_the_limit() {
    use tokio::io::AsyncWriteExt;
    let (mut client, mut server) = tokio::net::UnixStream::pair().unwrap();
    // A client that would go on sending forever: the reader stops after the limit.
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        while client.write_all(&chunk).await.is_ok() {}
    });
    let e = super::read_request(&mut server).await.expect_err("an endless request").to_string();
    assert!(e.contains("longer than"), "{e}");
    drop(server);
    writer.await.unwrap();
}
