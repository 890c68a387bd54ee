//! Hostile input to the grant parser, the pattern matcher and the placeholder
//! parser: random text never panics, and substitution never re-scans values.

use allama_grant::{Grant, HostRule, find_placeholders, substitute};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn grants_from_random_text_never_panic(src in "\\PC{0,300}") {
        let _ = Grant::from_toml_str(&src, "fuzz.toml");
    }

    #[test]
    fn grants_from_toml_shaped_text_never_panic(
        section in prop::sample::select(vec!["[http]", "[limits]", "[kv]", "[secrets.K]", "[secrets.\"😈\"]"]),
        key in "[a-z_]{1,20}",
        value in prop::sample::select(vec!["1", "-1", "99999999999999999999", "\"x\"", "[\"https://*.\"]", "[1, 2]", "true", "{a = 1}"]),
    ) {
        let _ = Grant::from_toml_str(&format!("{section}\n{key} = {value}\n"), "fuzz.toml");
    }

    #[test]
    fn host_patterns_from_random_text_never_panic(s in "\\PC{0,120}") {
        if let Ok(rule) = s.parse::<HostRule>() {
            // A parsed rule prints to a form that parses to the same rule.
            prop_assert_eq!(rule.to_string().parse::<HostRule>().unwrap(), rule);
        }
    }

    #[test]
    fn placeholder_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = find_placeholders(&bytes);
    }

    #[test]
    fn substituted_values_are_never_rescanned(name in "[A-Z_]{1,10}", value in "\\PC{0,40}") {
        let text = format!("a {{{{secret:{name}}}}} b");
        // A value that itself looks like a placeholder is inserted verbatim.
        let out = substitute(text.as_bytes(), |_| Ok::<_, ()>(format!("{value}{{{{secret:{name}}}}}").into_bytes())).unwrap();
        prop_assert_eq!(out, format!("a {value}{{{{secret:{name}}}}} b").into_bytes());
    }
}
