//! The config parser under hostile input (property tests; `cargo xtask fuzz` runs many more
//! cases): mutations of the complete example never panic the parser, every refusal names what
//! was wrong, and every file it accepts survives the round trip live edits rely on.

use proptest::prelude::*;

use super::Config;

const EXAMPLE: &str = include_str!("../../../examples/lb.toml");

/// A mutation of the example's text: a line dropped, duplicated or swapped, or bytes replaced.
#[derive(Debug, Clone)]
enum Edit {
    DropLine(prop::sample::Index),
    DuplicateLine(prop::sample::Index),
    SwapLines(prop::sample::Index, prop::sample::Index),
    Byte(prop::sample::Index, u8),
    Digit(prop::sample::Index, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::DropLine),
        any::<prop::sample::Index>().prop_map(Edit::DuplicateLine),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        (any::<prop::sample::Index>(), prop::sample::select(vec!['0', '1', '9', '-', '.', '"', ' '])).prop_map(|(i, c)| Edit::Digit(i, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for e in edits {
        match e {
            Edit::DropLine(i) if !lines.is_empty() => {
                lines.remove(i.index(lines.len()));
            }
            Edit::DuplicateLine(i) if !lines.is_empty() => {
                let l = lines[i.index(lines.len())].clone();
                lines.insert(i.index(lines.len()), l);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            Edit::Byte(i, b) => {
                let mut bytes = lines.join("\n").into_bytes();
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] = *b;
                }
                lines = String::from_utf8_lossy(&bytes).lines().map(str::to_string).collect();
            }
            Edit::Digit(i, c) => {
                let mut chars: Vec<char> = lines.join("\n").chars().collect();
                if !chars.is_empty() {
                    let at = i.index(chars.len());
                    chars[at] = *c;
                }
                lines = chars.into_iter().collect::<String>().lines().map(str::to_string).collect();
            }
            _ => {}
        }
    }
    lines.join("\n")
}

proptest! {
    #[test]
    fn fuzz_mutated_configs_are_accepted_whole_or_refused_with_a_reason(edits in proptest::collection::vec(edit(), 1..4)) {
        let text = apply(EXAMPLE, &edits);
        match Config::parse(&text) {
            Ok(cfg) => {
                let again = toml::to_string(&cfg).expect("an accepted config serializes");
                let reparsed = Config::parse(&again).expect("an accepted config re-validates");
                prop_assert_eq!(&reparsed, &cfg);
                // And as saved in the state directory (the running services, as JSON).
                let json = serde_json::to_value(&cfg).expect("an accepted config is JSON");
                prop_assert_eq!(Config::from_json(json, "saved").expect("re-validates from JSON"), cfg);
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "a refusal without a reason"),
        }
    }

    #[test]
    fn fuzz_arbitrary_text_never_panics_the_parser(text in ".{0,400}") {
        let _ = Config::parse(&text);
    }
}
