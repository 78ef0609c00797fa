//! Claim mapping on any JSON object, under mappings with and without prefixes: a mapped user
//! never carries a reserved `system:` name or group taken from the token, and always ends with
//! exactly one `system:authenticated`.

use kube_oidc_proxy::authn::ClaimMapping;
use serde_json::{Map, Value};

fn mapping(choice: u8) -> ClaimMapping {
    let (user_claim, user_prefix, groups_prefix) = match choice % 4 {
        0 => ("sub", "", ""),
        1 => ("email", "", ""),
        2 => ("preferred_username", "oidc:", "oidc:"),
        _ => ("sub", "system", ""), // a prefix that only becomes reserved with the claim's help
    };
    ClaimMapping {
        username_claim: user_claim.into(),
        username_prefix: user_prefix.into(),
        groups_claim: if choice & 4 == 0 {
            "groups".into()
        } else {
            String::new()
        },
        groups_prefix: groups_prefix.into(),
        required_claims: if choice & 8 == 0 {
            Vec::new()
        } else {
            vec![("tenant".into(), "blue".into())]
        },
    }
}

pub fn run(data: &[u8]) {
    let Some((&choice, json)) = data.split_first() else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(json) else {
        return;
    };
    let Ok(user) = mapping(choice).user(&claims) else {
        return;
    };
    assert!(!user.name.is_empty());
    assert!(!user.name.starts_with("system:"), "{}", user.name);
    let (last, taken) = user.groups.split_last().expect("system:authenticated");
    assert_eq!(last, "system:authenticated");
    for g in taken {
        assert!(!g.starts_with("system:"), "{g}");
    }
}
