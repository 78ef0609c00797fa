//! Access-log lines of hostile values: whatever the URI, forwarded-for chain, user name, groups
//! and extras hold, a text line is one line of visible characters with its fixed structure (the
//! brackets of its parts cannot be forged), and a JSON line is one JSON object.

use std::{collections::BTreeMap, net::IpAddr};

use kube_oidc_proxy::{
    audit::access_log::{Client, Extra, Format, write_fail, write_success},
    authn::User,
};

/// Input: the fields split at 0xFF (never part of UTF-8): 16 bytes of address and 8 of time,
/// then URI, forwarded-for (absent when empty), user name, groups (split at 0xFE), and extras
/// as key, values (split at 0xFE) pairs. Invalid UTF-8 becomes U+FFFD, itself a test value.
pub fn run(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(24));
    let mut fixed = [0u8; 24];
    fixed[..head.len()].copy_from_slice(head);
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&fixed[..16]);
    let secs = i64::from_le_bytes(fixed[16..].try_into().expect("8 bytes"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let list = |b: &[u8]| b.split(|&c| c == 0xfe).map(text).collect::<Vec<_>>();
    let mut fields = rest.split(|&b| b == 0xff);
    let uri = text(fields.next().unwrap_or_default());
    let xff = fields.next().filter(|x| !x.is_empty()).map(text);
    let name = text(fields.next().unwrap_or_default());
    let groups = fields.next().map(list).unwrap_or_default();
    let mut extras = Vec::new();
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        extras.push((text(k), list(v)));
    }
    let ip = if ip[0] & 1 == 0 {
        IpAddr::from([ip[1], ip[2], ip[3], ip[4]])
    } else {
        IpAddr::from(ip)
    };
    let now = time::OffsetDateTime::from_unix_timestamp(secs % 400_000_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut all_groups = groups;
    all_groups.push("system:authenticated".into());
    let user = User {
        name,
        uid: String::new(),
        groups: all_groups,
        extra: extras.into_iter().collect::<BTreeMap<_, _>>(),
    };
    let ip = ip.to_string();
    let client = Client {
        ip: &ip,
        forwarded_for: xff.as_deref(),
        uri: &uri,
    };
    let extra = Extra {
        request_id: "0123456789abcdef",
        cluster: Some("k8s"),
        code: 200,
        impersonator: None,
    };
    for format in [Format::Text, Format::Json] {
        let mut success = String::new();
        write_success(&mut success, format, now, &client, &user, &extra);
        let mut fail = String::new();
        write_fail(&mut fail, format, now, &client, &extra);
        for (line, brackets) in [(success, 3), (fail, 2)] {
            let body = line.strip_suffix('\n').expect("a line ends with a newline");
            assert!(!body.chars().any(char::is_control), "{line:?}");
            assert!(!body.contains(['\u{2028}', '\u{2029}', '\u{202e}']), "{line:?}");
            match format {
                Format::Text => {
                    assert_eq!(body.matches('[').count(), brackets, "{line:?}");
                    assert_eq!(body.matches(']').count(), brackets, "{line:?}");
                }
                Format::Json => {
                    let v: serde_json::Value = serde_json::from_str(body).expect("one JSON object");
                    assert!(v.is_object());
                }
            }
        }
    }
}
