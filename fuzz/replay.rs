//! `cargo test` replays the committed fuzz corpus through the fuzz targets' own checks
//! (`checks.rs`), on stable Rust and without libFuzzer. Included by `src/lib.rs` as a unit-test
//! module, so `ferrosocket::` resolves to the crate itself.

#[path = "checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>/`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("fuzz check {target} fails on {}", path.display());
        }
    }
}

#[test]
fn frame_reader_corpus() {
    replay("frame_reader", checks::frame_reader);
}

#[test]
fn envelope_corpus() {
    replay("envelope", checks::envelope);
}

#[test]
fn upgrade_head_corpus() {
    replay("upgrade_head", checks::upgrade_head);
}

/// The JSON oracle of the envelope check is hand-written: pin down what it accepts.
#[test]
fn json_grammar_oracle() {
    use checks::{json_kind, JsonKind::*};
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (text, kind) in [
        (r#" {"a" : [1, -0, 2.5e-3, 1E+400, "\ud800\n\u00E9", true, false, null, {}, []]} "#, Object),
        ("[]", Array),
        (r#""""#, String),
        ("-12345678901234567890.0e0", Number),
        ("null", Literal),
        (r#"{"$serde_json::private::RawValue":"1"}"#, Object),
        (&deep, Array),
    ] {
        assert_eq!(json_kind(text), Some(kind), "{text}");
    }
    for text in [
        "", " ", "[1,]", "[,1]", "{,}", r#"{"a":1,}"#, r#"{"a" 1}"#, "{1:2}", "[1 2]", "[", "]",
        "01", "1.", ".5", "-", "1e", "+1", "NaN", "tru", "nul", "\"\u{1}\"", r#""\x""#, r#""\u12""#,
        "\"open", "1 2", "{}}", "[]]", "\u{a0}1", "'a'",
    ] {
        assert_eq!(json_kind(text), None, "{text:?}");
    }
}
