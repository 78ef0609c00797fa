//! A string that keeps up to 23 bytes inline. Every field of a [`super::RequestInfo`] except
//! the path is a Kubernetes name, group, version or verb (short), and one is parsed for every
//! request: this keeps parsing free of a dozen small heap allocations.
//!
//! The storage is `smol_str`'s: reading an inline string back as `&str` costs nothing there,
//! where this crate's own inline buffer (it forbids `unsafe`) re-checked the bytes as UTF-8 on
//! every read, about 1.3k instructions per audited request.

use std::{fmt, hash::Hash, ops::Deref};

use smol_str::{SmolStr, StrExt};

/// An immutable string: inline when short, shared on the heap otherwise. Reads as a `&str`.
#[derive(Clone)]
pub struct ShortStr(SmolStr);

impl ShortStr {
    pub const fn new() -> Self {
        ShortStr(SmolStr::new_static(""))
    }

    /// `s` with ASCII letters lowercased (as Go's `strings.ToLower` does for an HTTP method).
    pub fn ascii_lowercase(s: &str) -> Self {
        ShortStr(s.to_ascii_lowercase_smolstr())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Default for ShortStr {
    fn default() -> Self {
        Self::new()
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        ShortStr(SmolStr::new(s))
    }
}

impl From<String> for ShortStr {
    fn from(s: String) -> Self {
        ShortStr(SmolStr::from(s))
    }
}

impl Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortStr {}

impl Hash for ShortStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ShortStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<String> for ShortStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_strings_read_back_unchanged() {
        let at_limit = "a".repeat(23);
        let over = "é".repeat(23); // multi-byte, 46 bytes
        for s in ["", "pods", "rbac.authorization.k8s.io", &at_limit, &over] {
            let a = ShortStr::from(s);
            let b = ShortStr::from(s.to_string());
            assert_eq!(a.as_str(), s);
            assert_eq!(a, b);
            assert_eq!(a, s);
            assert_eq!(format!("{a}"), s);
            assert_eq!(format!("{a:?}"), format!("{s:?}"));
        }
        assert!(!ShortStr::from(at_limit.as_str()).0.is_heap_allocated());
        assert!(ShortStr::from(over.as_str()).0.is_heap_allocated());
        assert_eq!(ShortStr::default().as_str(), "");
        assert_eq!(ShortStr::ascii_lowercase("PROPFIND"), "propfind");
        assert_eq!(ShortStr::ascii_lowercase(&"É-GET".repeat(10)), "É-get".repeat(10));
        assert_eq!(std::mem::size_of::<ShortStr>(), 24);
    }
}
