//! The static limits, and the nesting check that runs before the CEL parser.
//!
//! The CEL parser (ANTLR-generated) and the interpreter both recurse over the expression's
//! structure, so a hostile `((((…` or a 2,000-term `1+1+…+1` could exhaust the stack before
//! any error is reported. [`check_nesting`] bounds that structure from the tokens alone, with
//! an explicit stack, so nothing recursive runs on unchecked input.

use crate::error::ParseError;

/// Longest expression source, in bytes (one `${{ … }}` or one `if:`).
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// Most `${{ … }}` segments in one template string.
pub const MAX_TEMPLATE_EXPRESSIONS: usize = 256;

/// Deepest nesting, as estimated by [`check_nesting`]: each bracket level (`(`, `[`, `{`, a
/// call's arguments) counts 2, and each left-nested operator (`.`, `[`, `+`, `==`, `?`, …)
/// in a chain counts 1 for the chain it belongs to, summed along the deepest path.
pub const MAX_NESTING: usize = 64;

/// Deepest nesting of comprehensions (`map`, `filter`, `all`, `exists`, `exists_one`)
/// inside the body of another.
pub const MAX_COMPREHENSION_NESTING: usize = 3;

/// Largest string or bytes value a function, `+` or a template interpolation may produce.
pub const MAX_STRING_BYTES: usize = 1 << 20;

/// Most elements in a list (or entries in a map) a function or `+` may produce.
pub const MAX_LIST_ITEMS: usize = 100_000;

/// Compile-size limit of one regex (the `regex` crate's `size_limit`), in bytes.
pub const MAX_REGEX_SIZE: usize = 1 << 20;

/// Longest regex pattern, in bytes.
pub const MAX_REGEX_PATTERN_LEN: usize = 2048;

/// The evaluation budget of one expression, in cost units: one per comprehension iteration,
/// plus the size of what functions and `+` read and produce (one per byte / 64, one per list
/// element or map entry). Exceeding it fails the evaluation.
pub const EVAL_BUDGET: u64 = 2_000_000;

/// Weight of one bracket level in [`MAX_NESTING`]: the parser spends about ten rule frames
/// per level.
const BRACKET_WEIGHT: usize = 2;

/// One bracket level during the scan.
#[derive(Default)]
struct Frame {
    /// Left-nested operators in the current chain (reset by `,`, `&&`, `||`).
    chain: usize,
    /// Deepest child bracket in the current chain.
    child: usize,
    /// Deepest chain seen so far in this frame.
    best: usize,
    /// Terms joined by `&&`/`||`: the parser balances them into a tree of log₂ depth.
    logic_terms: usize,
    /// Character offset of the opening bracket, for the error.
    offset: usize,
}

impl Frame {
    fn end_chain(&mut self) {
        self.best = self.best.max(self.chain + self.child);
        self.chain = 0;
        self.child = 0;
    }

    fn depth(mut self) -> usize {
        self.end_chain();
        let logic = usize::BITS as usize - self.logic_terms.leading_zeros() as usize;
        self.best + logic
    }
}

/// Estimates the nesting depth of `src` from its tokens and refuses it past [`MAX_NESTING`].
///
/// String literals (with CEL's prefixes and triple quotes) and `//` comments are skipped;
/// unbalanced brackets are left for the parser to report, but still counted, since the parser
/// recurses into them before it notices.
pub(crate) fn check_nesting(src: &str) -> Result<(), ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut stack: Vec<Frame> = vec![Frame::default()];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i = skip_string(&chars, i);
                continue;
            }
            'r' | 'R' | 'b' | 'B' if starts_string(&chars, i) => {
                i = skip_string(&chars, i);
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '(' | '[' | '{' => {
                if let Some(top) = stack.last_mut() {
                    // `a[...]` and `f(...)` extend the chain they follow.
                    if c != '{' {
                        top.chain += 1;
                    }
                }
                stack.push(Frame {
                    offset: i,
                    ..Frame::default()
                });
            }
            ')' | ']' | '}' => close(&mut stack),
            ',' => {
                if let Some(top) = stack.last_mut() {
                    top.end_chain();
                }
            }
            '&' | '|' if chars.get(i + 1) == Some(&c) => {
                if let Some(top) = stack.last_mut() {
                    top.end_chain();
                    top.logic_terms += 1;
                }
                i += 2;
                continue;
            }
            '.' | '+' | '-' | '*' | '/' | '%' | '<' | '>' | '=' | '!' | '?' => {
                if let Some(top) = stack.last_mut() {
                    top.chain += 1;
                }
                // Two-character operators count once.
                if chars.get(i + 1) == Some(&'=') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if chars[start..i] == ['i', 'n']
                    && let Some(top) = stack.last_mut()
                {
                    top.chain += 1;
                }
                continue;
            }
            _ => {}
        }
        let depth = estimate(&stack);
        if depth > MAX_NESTING {
            let offset = stack.last().map_or(0, |f| f.offset);
            return Err(ParseError::new(
                offset,
                format!("expression is nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        i += 1;
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    let depth = stack.pop().map_or(0, Frame::depth);
    if depth > MAX_NESTING {
        return Err(ParseError::new(
            0,
            format!("expression is nested too deeply (more than {MAX_NESTING} levels)"),
        ));
    }
    Ok(())
}

/// Closes the innermost bracket, if any (an unbalanced closer is the parser's to report).
fn close(stack: &mut Vec<Frame>) {
    if stack.len() > 1
        && let Some(frame) = stack.pop()
    {
        let depth = BRACKET_WEIGHT + frame.depth();
        if let Some(parent) = stack.last_mut() {
            parent.child = parent.child.max(depth);
        }
    }
}

/// A lower bound of the final depth at this point of the scan: what is open so far.
fn estimate(stack: &[Frame]) -> usize {
    stack
        .iter()
        .enumerate()
        .map(|(level, f)| {
            let own = f.best.max(f.chain + f.child);
            own + if level > 0 { BRACKET_WEIGHT } else { 0 }
        })
        .sum()
}

/// Whether a string literal with a prefix (`r"…"`, `b'…'`, `rb"…"`, …) starts at `i`.
fn starts_string(chars: &[char], i: usize) -> bool {
    // A prefix must not continue an identifier (`bar"` is not a prefix).
    if i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_') {
        return false;
    }
    let mut j = i;
    while j < chars.len() && j < i + 2 && matches!(chars[j], 'r' | 'R' | 'b' | 'B') {
        j += 1;
    }
    matches!(chars.get(j), Some('"') | Some('\''))
}

/// The index just past the string literal starting at `i` (at its prefix or quote); the end
/// of input when it is unterminated.
pub(crate) fn skip_string(chars: &[char], mut i: usize) -> usize {
    let mut raw = false;
    while i < chars.len() && matches!(chars[i], 'r' | 'R' | 'b' | 'B') {
        raw |= matches!(chars[i], 'r' | 'R');
        i += 1;
    }
    let Some(&quote) = chars.get(i) else {
        return i;
    };
    let triple = chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote);
    i += if triple { 3 } else { 1 };
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && !raw {
            i += 2;
            continue;
        }
        if c == quote {
            if !triple {
                return i + 1;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        if c == '\n' && !triple {
            // Single-quoted strings end at the line; the parser reports it.
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(s: &str) -> bool {
        check_nesting(s).is_ok()
    }

    #[test]
    fn ordinary_expressions_pass() {
        for s in [
            "steps.vt.output.data.attributes.last_analysis_stats.malicious > 3",
            "trigger.alert.ips.map(ip, ip.startsWith('10.')).exists(x, x)",
            "size(steps.extract.output.ips) > 0 && inputs.mode == 'block' || always()",
            "{'a': [1, 2, {'b': (1 + 2) * 3}]}",
            "'(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((('",
            "r\"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((\"",
            "// ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((\n1",
            "'''(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((\n'''",
        ] {
            assert!(depth_ok(s), "{s}");
        }
    }

    #[test]
    fn deep_brackets_are_refused() {
        for open in ["(", "[", "{", "f(", "[[{"] {
            let s = open.repeat(10_000);
            let err = check_nesting(&s).unwrap_err();
            assert!(err.message.contains("nested too deeply"), "{open}: {err}");
        }
        assert!(depth_ok(&format!("{}1{}", "(".repeat(20), ")".repeat(20))));
        assert!(!depth_ok(&format!("{}1{}", "(".repeat(40), ")".repeat(40))));
    }

    #[test]
    fn long_chains_are_refused() {
        assert!(depth_ok(&vec!["1"; 50].join(" + ")));
        assert!(!depth_ok(&vec!["1"; 100].join(" + ")));
        assert!(!depth_ok(&format!("a{}", ".b".repeat(100))));
        assert!(!depth_ok(&format!("a{}", "[0]".repeat(100))));
        assert!(!depth_ok(&"true ? 1 : ".repeat(100)));
        assert!(!depth_ok(&"!".repeat(100)));
    }

    #[test]
    fn logical_chains_are_balanced() {
        assert!(depth_ok(&vec!["a.b == 1"; 500].join(" && ")));
        assert!(depth_ok(&vec!["x"; 1000].join(" || ")));
    }

    #[test]
    fn commas_separate_chains() {
        let args = vec!["a.b.c.d"; 200].join(", ");
        assert!(depth_ok(&format!("[{args}]")));
    }

    #[test]
    fn nested_chains_add_up() {
        // 30 levels of `(x + …)` each adding 2 + 1.
        let s = format!("{}1{}", "(1 + ".repeat(30), ")".repeat(30));
        assert!(!depth_ok(&s));
    }

    #[test]
    fn unterminated_input_is_scanned_to_the_end() {
        for s in [
            "'abc",
            "\"\"\"abc",
            "r'",
            "b",
            "(",
            ")))",
            "\\",
            "'\\",
            "\"\\\"",
        ] {
            let _ = check_nesting(s);
        }
    }
}
