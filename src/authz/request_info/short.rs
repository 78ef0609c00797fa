//! A string that keeps up to 30 bytes inline. Every field of a [`super::RequestInfo`] except
//! the path is a Kubernetes name, group, version or verb (short), and one is parsed for every
//! request: this keeps parsing free of a dozen small heap allocations.

use std::{fmt, hash::Hash, ops::Deref};

const INLINE: usize = 30;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<str>),
}

/// An immutable string: inline when short, boxed otherwise. Reads as a `&str`.
#[derive(Clone)]
pub struct ShortStr(Repr);

impl ShortStr {
    pub const fn new() -> Self {
        ShortStr(Repr::Inline {
            len: 0,
            buf: [0; INLINE],
        })
    }

    /// `s` with ASCII letters lowercased (as Go's `strings.ToLower` does for an HTTP method),
    /// lowercased in place when it fits inline.
    pub fn ascii_lowercase(s: &str) -> Self {
        match Self::from(s) {
            ShortStr(Repr::Inline { len, mut buf }) => {
                // ASCII case changes keep the bytes valid UTF-8.
                buf[..usize::from(len)].make_ascii_lowercase();
                ShortStr(Repr::Inline { len, buf })
            }
            ShortStr(Repr::Heap(_)) => Self::from(s.to_ascii_lowercase()),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, buf } => {
                // Only ever filled from a whole `&str` (see `From<&str>`), so this is UTF-8.
                std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(s) => s,
        }
    }
}

impl Default for ShortStr {
    fn default() -> Self {
        Self::new()
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            ShortStr(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            ShortStr(Repr::Heap(s.into()))
        }
    }
}

impl From<String> for ShortStr {
    fn from(s: String) -> Self {
        if s.len() <= INLINE {
            Self::from(s.as_str())
        } else {
            ShortStr(Repr::Heap(s.into_boxed_str()))
        }
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
        let at_limit = "a".repeat(INLINE);
        let over = "é".repeat(INLINE); // multi-byte, 60 bytes
        for s in ["", "pods", "rbac.authorization.k8s.io", &at_limit, &over] {
            let a = ShortStr::from(s);
            let b = ShortStr::from(s.to_string());
            assert_eq!(a.as_str(), s);
            assert_eq!(a, b);
            assert_eq!(a, s);
            assert_eq!(format!("{a}"), s);
            assert_eq!(format!("{a:?}"), format!("{s:?}"));
        }
        assert!(matches!(ShortStr::from(at_limit.as_str()).0, Repr::Inline { .. }));
        assert!(matches!(ShortStr::from(over.as_str()).0, Repr::Heap(_)));
        assert_eq!(ShortStr::default().as_str(), "");
        assert_eq!(ShortStr::ascii_lowercase("PROPFIND"), "propfind");
        assert_eq!(ShortStr::ascii_lowercase(&"É-GET".repeat(10)), "É-get".repeat(10));
        assert_eq!(std::mem::size_of::<ShortStr>(), 32);
    }
}
