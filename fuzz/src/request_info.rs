//! Routing and RequestInfo on any request line: `method \n path \n query \n upgrade`. Whatever
//! is accepted names a valid cluster, has no dot segments after decoding, and parses the same
//! way twice.

use kube_oidc_proxy::{authz::request_info::RequestInfo, authz::reviews, proxy::route};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let method = parts.next().unwrap_or("GET");
    let path = parts.next().unwrap_or("/");
    let query = parts.next();
    let upgrade = parts.next().is_some_and(|u| u.starts_with('1'));
    let Ok(r) = route::parse(path, query) else {
        return;
    };
    assert!(
        kube_oidc_proxy::config::valid_cluster_name(r.cluster),
        "{:?}",
        r.cluster
    );
    let k8s_path = if r.path.is_empty() { "/" } else { r.path };
    let first = RequestInfo::parse(method, k8s_path, r.query, upgrade);
    let again = RequestInfo::parse(method, k8s_path, r.query, upgrade);
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
    if let Ok(info) = first {
        let _ = reviews::is_self_review(&info);
        for segment in info.path.split('/') {
            assert!(segment != "." && segment != "..", "{:?}", info.path);
        }
    }
}
