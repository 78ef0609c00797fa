//! The identity the proxy decides and logs with.

use std::collections::BTreeMap;

/// Group every authenticated user carries, as in kube-apiserver.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

/// An authenticated user. Built once per token and shared (`Arc`) by every request carrying it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    /// Groups from the token, prefixed, followed by `system:authenticated`.
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// Groups as the token gave them, without the ones the proxy adds (what logs and audit show).
    pub fn token_groups(&self) -> impl Iterator<Item = &str> {
        self.groups
            .iter()
            .map(String::as_str)
            .filter(|g| *g != SYSTEM_AUTHENTICATED)
    }
}
