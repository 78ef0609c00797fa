//! The `--clusters-config` file: `clusters: [{name, kubeconfig, identity}]`; `identity` is
//! optional and chooses how requests reach that cluster (see [`Identity`]).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ConfigError, cluster_name_problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// `clusters:` with nothing after it (all clusters from the Secret) reads as empty.
    #[serde(default)]
    clusters: Option<Vec<Spanned<Entry>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(default)]
    kubeconfig: Option<Spanned<String>>,
    #[serde(default)]
    identity: Option<Spanned<String>>,
}

/// Whose identity a request carries to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    /// The proxy's kubeconfig credentials, nothing about the user (the Go fork's behaviour).
    Credentials,
    /// The proxy's credentials plus `Impersonate-*` for the user (`--impersonate-upstream`).
    Impersonate,
    /// The user's own bearer token and none of the proxy's credentials
    /// (`--disable-impersonation`, for clusters that trust the same issuer).
    PassthroughUserToken,
}

impl Identity {
    pub fn parse(s: &str) -> Option<Identity> {
        Some(match s {
            "credentials" => Identity::Credentials,
            "impersonate" => Identity::Impersonate,
            "passthrough-user-token" => Identity::PassthroughUserToken,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Identity::Credentials => "credentials",
            Identity::Impersonate => "impersonate",
            Identity::PassthroughUserToken => "passthrough-user-token",
        }
    }
}

/// One usable entry of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEntry {
    pub name: String,
    pub kubeconfig: PathBuf,
    /// `None`: the flags decide.
    pub identity: Option<Identity>,
    /// Where the entry is, for later error messages (a kubeconfig that fails to load).
    pub line: u64,
}

/// Entries that can be served, plus one error per entry that was skipped. A file that cannot be
/// read or parsed at all is an error of its own: the caller should stop.
pub struct Loaded {
    pub clusters: Vec<ClusterEntry>,
    pub skipped: Vec<ConfigError>,
}

pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let file: File = if text.trim().is_empty() {
        File { clusters: None }
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: e.location().map(|l| l.line()).unwrap_or(0),
            field: String::new(),
            message: first_line(&e.to_string()),
        })?
    };
    let err = |line: u64, field: String, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        field,
        message,
    };
    let mut loaded = Loaded {
        clusters: Vec::new(),
        skipped: Vec::new(),
    };
    let mut seen = HashSet::new();
    for (i, entry) in file.clusters.unwrap_or_default().into_iter().enumerate() {
        let entry_line = entry.referenced.line();
        let Some(name) = entry.value.name else {
            loaded.skipped.push(err(
                entry_line,
                format!("clusters[{i}].name"),
                "missing cluster name".into(),
            ));
            continue;
        };
        let line = name.referenced.line();
        let field = format!("clusters[{i}].name");
        if let Some(problem) = cluster_name_problem(&name.value) {
            loaded.skipped.push(err(line, field, problem));
            continue;
        }
        if !seen.insert(name.value.clone()) {
            loaded.skipped.push(err(
                line,
                field,
                format!("duplicate cluster name {:?}", name.value),
            ));
            continue;
        }
        let Some(kubeconfig) = entry.value.kubeconfig.filter(|k| !k.value.is_empty()) else {
            loaded.skipped.push(err(
                entry_line,
                format!("clusters[{i}].kubeconfig"),
                format!("cluster {:?} has no kubeconfig", name.value),
            ));
            continue;
        };
        let identity = match entry.value.identity {
            None => None,
            Some(id) => match Identity::parse(&id.value) {
                Some(identity) => Some(identity),
                None => {
                    loaded.skipped.push(err(
                        id.referenced.line(),
                        format!("clusters[{i}].identity"),
                        format!(
                            "unknown identity {:?} (credentials, impersonate or passthrough-user-token)",
                            id.value
                        ),
                    ));
                    continue;
                }
            },
        };
        loaded.clusters.push(ClusterEntry {
            name: name.value,
            kubeconfig: PathBuf::from(kubeconfig.value),
            identity,
            line: kubeconfig.referenced.line(),
        });
    }
    Ok(loaded)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("clusters.yaml")
    }

    #[test]
    fn identity_per_cluster() {
        let text = "clusters:\n  - name: a\n    kubeconfig: a\n    identity: passthrough-user-token\n  - name: b\n    kubeconfig: b\n  - name: c\n    kubeconfig: c\n    identity: root\n";
        let l = parse(p(), text).unwrap();
        assert_eq!(l.clusters[0].identity, Some(Identity::PassthroughUserToken));
        assert_eq!(l.clusters[1].identity, None);
        assert_eq!(l.clusters.len(), 2);
        let msg = l.skipped[0].to_string();
        assert!(
            msg.starts_with("clusters.yaml:9: clusters[2].identity: unknown identity \"root\""),
            "{msg}"
        );
    }

    #[test]
    fn an_empty_list_is_no_clusters() {
        for text in ["clusters:\n", "clusters: []\n", "", "# all from the Secret\n"] {
            let l = parse(p(), text).unwrap();
            assert!(l.clusters.is_empty() && l.skipped.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn good_file() {
        let l = parse(
            p(),
            "clusters:\n  - name: k8s\n    kubeconfig: /k/a.yaml\n  - name: kind\n    kubeconfig: b.yaml\n",
        )
        .unwrap();
        assert!(l.skipped.is_empty());
        assert_eq!(l.clusters.len(), 2);
        assert_eq!(l.clusters[0].name, "k8s");
        assert_eq!(l.clusters[0].kubeconfig, PathBuf::from("/k/a.yaml"));
        assert_eq!(l.clusters[1].line, 5);
    }

    #[test]
    fn bad_entries_are_skipped_with_their_line() {
        let text = "clusters:\n  - name: ok\n    kubeconfig: a\n  - name: ../x\n    kubeconfig: b\n  - name: ok\n    kubeconfig: c\n  - name: nokc\n  - kubeconfig: d\n";
        let l = parse(p(), text).unwrap();
        assert_eq!(l.clusters.len(), 1);
        let msgs: Vec<String> = l.skipped.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(
            msgs[0].starts_with("clusters.yaml:4: clusters[1].name: invalid cluster name"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].starts_with("clusters.yaml:6: clusters[2].name: duplicate"),
            "{}",
            msgs[1]
        );
        assert!(
            msgs[2].contains("clusters[3].kubeconfig: cluster \"nokc\" has no kubeconfig"),
            "{}",
            msgs[2]
        );
        assert!(
            msgs[3].contains("clusters[4].name: missing cluster name"),
            "{}",
            msgs[3]
        );
    }

    #[test]
    fn syntax_and_unknown_fields_name_the_line() {
        let e = parse(p(), "clusters:\n  - name: a\n    kubeconfg: x\n")
            .err()
            .expect("unknown field");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().starts_with("clusters.yaml:3"), "{e}");
        let e = parse(p(), "clusters: [\n").err().expect("syntax");
        assert!(e.to_string().starts_with("clusters.yaml"), "{e}");
        assert!(parse(p(), "").unwrap().clusters.is_empty());
    }

    #[test]
    fn reserved_names_are_skipped_with_file_line_and_field() {
        let loaded = parse(
            p(),
            "clusters:\n- name: k8s\n  kubeconfig: a\n- name: api\n  kubeconfig: b\n- name: version\n  kubeconfig: c\n",
        )
        .unwrap();
        let names: Vec<_> = loaded.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["k8s"]);
        let errors: Vec<_> = loaded.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("clusters.yaml:4: clusters[1].name: ")
                && errors[0].contains("\"api\" is reserved"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("clusters.yaml:6: clusters[2].name: "),
            "{errors:?}"
        );
    }

    #[test]
    fn names() {
        for reserved in crate::config::RESERVED_CLUSTER_NAMES {
            assert!(cluster_name_problem(reserved).is_some(), "{reserved}");
        }
        assert_eq!(cluster_name_problem("apis-prod"), None);
        for ok in ["k8s", "a.b-c_d", "C1"] {
            assert!(crate::config::valid_cluster_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a%2Fb", "a b", "ä"] {
            assert!(!crate::config::valid_cluster_name(bad), "{bad}");
        }
    }
}
