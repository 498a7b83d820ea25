//! nitro-cli's error codes: the table covers every code nitro-cli documents, under nitro-cli's
//! own names (`testdata/nitro-cli/error-codes.tsv`, taken from nitro-cli 1.5's
//! `document_errors.rs`). How a failure reaches the user is `nitro_fake.rs`'s.

use std::path::Path;

use enclave_engine::backend::describe_error_code;
use enclave_engine::backend::nitro_errors::{lookup, NITRO_ERROR_CODES};

#[test]
fn the_table_is_nitro_cli_s_list_in_order() {
    let tsv = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/nitro-cli/error-codes.tsv");
    let recorded: Vec<(String, String)> = std::fs::read_to_string(&tsv)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (code, name) = l.split_once('\t').unwrap();
            (code.to_owned(), name.to_owned())
        })
        .collect();
    assert_eq!(recorded.len(), 61, "E00 to E60");
    let ours: Vec<(String, String)> = NITRO_ERROR_CODES
        .iter()
        .map(|e| (e.code.to_owned(), e.name.to_owned()))
        .collect();
    assert_eq!(ours, recorded);
    for e in NITRO_ERROR_CODES {
        assert!(
            e.advice.len() > 30 && e.advice.contains(':'),
            "{}: say what happened, then what to do: {:?}",
            e.code,
            e.advice
        );
    }
    let mut advice: Vec<_> = NITRO_ERROR_CODES.iter().map(|e| e.advice).collect();
    advice.sort();
    advice.dedup();
    assert_eq!(
        advice.len(),
        NITRO_ERROR_CODES.len(),
        "each code its own sentence"
    );
    assert_eq!(lookup("E27").unwrap().name, "InsufficientMemoryAvailable");
    assert!(lookup("E61").is_none());
    assert!(describe_error_code("E99").ends_with("cli-errors.html#E99"));
}
