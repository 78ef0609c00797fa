//! Just enough of `k8s.io/apimachinery/pkg/fields` to answer
//! `ParseSelector(s).RequiresExactMatch("metadata.name")`, which kube-apiserver uses to give a
//! list or watch a name (so `resourceNames` rules can allow a single-object watch).

/// The name the selector pins `metadata.name` to, or `None` when it pins none or does not parse.
pub(super) fn required_name(selector: &str) -> Option<String> {
    let mut terms = split_terms(selector);
    // Go sorts the terms before building the selector, and the first exact match wins.
    terms.sort_unstable();
    let mut found = None;
    for term in terms {
        if term.is_empty() {
            continue;
        }
        let (field, op, raw_value) = split_term(term)?;
        // Every term must parse, even after a match: a bad one fails the whole selector.
        let value = unescape_value(raw_value)?;
        if found.is_none() && op != Op::NotEqual && field == "metadata.name" {
            found = Some(value);
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    NotEqual,
    Equal,
}

/// Splits on commas that are not escaped by a backslash.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::with_capacity(1);
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Finds the first operator, trying `!=`, `==`, `=` at each position.
fn split_term(term: &str) -> Option<(&str, Op, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (token, op) in [("!=", Op::NotEqual), ("==", Op::Equal), ("=", Op::Equal)] {
            if let Some(value) = rest.strip_prefix(token) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// `fields.UnescapeValue`: `\\`, `\,` and `\=` are escapes; a bare `,` or `=` is an error.
fn unescape_value(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return None;
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return None,
            _ => out.push(c),
        }
    }
    if in_slash { None } else { Some(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_name_table() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("metadata.name=foo", Some("foo")),
            ("metadata.name==foo", Some("foo")),
            ("metadata.name!=foo", None),
            ("metadata.name=", Some("")),
            ("foo=bar", None),
            ("metadata.namespace=x,metadata.name=foo", Some("foo")),
            // From kube's TestFieldSelectorParsing: a term without operator fails everything.
            ("metadata.name=name1,foo", None),
            // Sorted, so "a" comes before "b" whatever the order written.
            ("metadata.name=b,metadata.name=a", Some("a")),
            ("metadata.name=a\\,b", Some("a,b")),
            ("metadata.name=a\\=b", Some("a=b")),
            ("metadata.name=a\\\\b", Some("a\\b")),
            ("metadata.name=a=b", None),
            ("metadata.name=a\\x", None),
            ("metadata.name=a\\", None),
            ("metadata.name =foo", None),
            ("metadata.name=foo,", Some("foo")),
            ("spec.nodeName!=x,metadata.name=n", Some("n")),
        ];
        for (selector, want) in cases {
            assert_eq!(required_name(selector).as_deref(), *want, "selector {selector:?}");
        }
    }
}
