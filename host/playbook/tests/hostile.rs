//! Hostile input: whatever the bytes, parsing and validating end in a playbook or in
//! diagnostics, never a panic.

mod common;

use proptest::prelude::*;

const EXAMPLE: &str = include_str!("fixtures/ip-reputation.yaml");

/// Pieces playbooks (and attacks on them) are made of.
const TOKENS: &[&str] = &[
    "id: ",
    "steps:",
    "- ",
    "  ",
    "\n",
    "{",
    "}",
    "[",
    "]",
    ", ",
    ": ",
    "uses: ",
    "p/a@1",
    "needs: ",
    "if: ",
    "for_each: ",
    "with: ",
    "${{",
    "}}",
    "steps.",
    "item",
    "secrets.X",
    "&a ",
    "*a",
    "!!str ",
    "---\n",
    "? ",
    "\"",
    "'",
    "#",
    "|\n",
    ">\n",
    "approval: ",
    "escalate_to: ",
    "on_error: ",
    "retry: ",
    "timeout: ",
    "1s",
    "0",
    "-1",
    "1e999",
    ".nan",
    "~",
    "null",
    "true",
    "é",
    "日本",
    "\u{0}",
    "\t",
    "\r\n",
    "\u{feff}",
    "%YAML 1.2\n",
    "a",
    "b",
    "concurrency: ",
    "approvers: ",
    "roles: [admin]",
    "message: m",
];

fn run_all(source: &str) {
    let catalog = common::catalog();
    for file in ["p.yaml", "p.json"] {
        if let Err(d) = allama_playbook::parse(source, file) {
            assert!(!d.0.is_empty());
            // One diagnostic per line, whatever the input held.
            assert_eq!(d.to_string().lines().count(), d.0.len());
        }
        let _ = allama_playbook::validate(source, file, &catalog);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        run_all(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_token_soup_never_panics(parts in proptest::collection::vec(0..TOKENS.len(), 0..200)) {
        let source: String = parts.iter().map(|&i| TOKENS[i]).collect();
        run_all(&source);
    }

    #[test]
    fn mutated_example_never_panics(
        edits in proptest::collection::vec((0..EXAMPLE.len(), 0..TOKENS.len(), any::<bool>()), 1..8)
    ) {
        let mut source = EXAMPLE.to_string();
        for (at, token, delete) in edits {
            let mut at = at.min(source.len());
            while !source.is_char_boundary(at) {
                at -= 1;
            }
            if delete {
                let end = (at + 8).min(source.len());
                let mut end = end;
                while !source.is_char_boundary(end) {
                    end -= 1;
                }
                source.replace_range(at..end, "");
            } else {
                source.insert_str(at, TOKENS[token]);
            }
        }
        run_all(&source);
    }

    #[test]
    fn any_string_in_any_field_never_panics(
        field in prop::sample::select(vec!["id", "uses", "needs", "if", "for_each", "timeout", "on_error", "playbook", "concurrency"]),
        value in "\\PC{0,40}",
    ) {
        let quoted = serde_json::to_string(&value).unwrap_or_default();
        let source = format!("id: x\nsteps:\n  - id: a\n    uses: p/a@1\n  - id: b\n    {field}: {quoted}\n");
        run_all(&source);
    }
}
