//! The checks kube-apiserver makes *inside* its handlers with the requester's identity, made by
//! the proxy for the real user before a write leaves with the proxy's own credentials.
//!
//! The request line is authorized like any other; these checks look at what the write would
//! produce (the object a dry run of the same request returns), because that is what
//! kube-apiserver looks at:
//!
//! | write | kube-apiserver's check | here |
//! |---|---|---|
//! | Role, ClusterRole | `escalate`, or hold every rule (`ConfirmNoEscalation`); `aggregationRule` needs full authority | same |
//! | RoleBinding, ClusterRoleBinding | `bind` on the role, or hold its rules | same, roles resolved as the proxy resolves them |
//! | update or apply that creates | `create` on the object | same, told by the dry run's 201 |
//! | CSR create (POST, PUT or apply) | the requester is recorded; kube's approver trusts it for node client certificates | a kubelet-client CSR needs `create certificatesigningrequests/nodeclient` |
//! | CSR approval / status | `approve` / `sign` on the signer | same (`sign` for every status write) |
//! | ClusterTrustBundle with a signer | `attest` on the signer | same |
//! | admission policy with paramKind, binding with paramRef | `get`/`list` on the parameter resource | cluster-wide `get`+`list` on every resource of the group (`*` when unknown), a superset |

use serde_json::Value;

use super::escalation::{escalation_message, full_authority, uncovered};
use super::forbidden::{forbidden_head, forbidden_message, go_quote};
use super::rbac::{Decision, PolicyRule, Snapshot};
use super::request_info::RequestInfo;

const RBAC: &str = "rbac.authorization.k8s.io";
const CERTIFICATES: &str = "certificates.k8s.io";
const ADMISSION: &str = "admissionregistration.k8s.io";

/// Who asks: the name and complete group list the decision was made for.
#[derive(Clone, Copy)]
pub struct Requester<'a> {
    pub name: &'a str,
    pub groups: &'a [String],
}

/// A refusal, worded as kube-apiserver words its own (a 403 Forbidden Status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// What must be checked in the object a write produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    /// A CSR being created by someone without `nodeclient`.
    CsrCreate,
    CsrApproval,
    CsrSigning,
    TrustBundle,
    AdmissionPolicy,
    AdmissionPolicyBinding,
}

/// A write that needs a dry run before it is sent: what to check in its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePlan {
    pub content: Option<Content>,
    /// The user may not `create` this object, and the write could create it (PUT, or a
    /// server-side apply): a dry run answering 201 Created is refused.
    pub refuse_create: bool,
}

/// Decides from the request line alone whether a write needs its result checked, or is refused
/// outright. `None`: forward as it is. `content_type` is the raw header, bytes as sent.
pub fn plan(
    info: &RequestInfo,
    content_type: Option<&[u8]>,
    who: Requester<'_>,
    snapshot: &Snapshot,
) -> Result<Option<WritePlan>, Refused> {
    if !info.is_resource_request {
        return Ok(None);
    }
    let verb = info.verb.as_str();
    if !matches!(verb, "create" | "update" | "patch") {
        return Ok(None);
    }
    let group = info.api_group.as_str();
    let sub = info.subresource.as_str();
    // PUT creates where the resource allows it and a patch may when it is a server-side apply;
    // kube-apiserver then checks `create` with the requester's identity.
    let may_create =
        sub.is_empty() && (verb == "update" || (verb == "patch" && patch_may_create(content_type)));
    let content = match (group, info.resource.as_str(), sub) {
        (RBAC, "roles", "") => Some(Content::Role),
        (RBAC, "clusterroles", "") => Some(Content::ClusterRole),
        (RBAC, "rolebindings", "") => Some(Content::RoleBinding),
        (RBAC, "clusterrolebindings", "") => Some(Content::ClusterRoleBinding),
        // kube records the requester in a CSR, and its own approver issues node client
        // certificates to requesters allowed `create certificatesigningrequests/nodeclient`:
        // through the proxy that requester is the proxy, whichever way the CSR is created.
        (CERTIFICATES, "certificatesigningrequests", "")
            if (verb == "create" || may_create) && !allowed(snapshot, who, &node_client(info)) =>
        {
            Some(Content::CsrCreate)
        }
        (CERTIFICATES, "certificatesigningrequests", "approval") if verb != "create" => {
            Some(Content::CsrApproval)
        }
        (CERTIFICATES, "certificatesigningrequests", "status") if verb != "create" => {
            Some(Content::CsrSigning)
        }
        (CERTIFICATES, "clustertrustbundles", "") => Some(Content::TrustBundle),
        (ADMISSION, "validatingadmissionpolicies" | "mutatingadmissionpolicies", "") => {
            Some(Content::AdmissionPolicy)
        }
        (ADMISSION, "validatingadmissionpolicybindings" | "mutatingadmissionpolicybindings", "") => {
            Some(Content::AdmissionPolicyBinding)
        }
        _ => None,
    };
    if content == Some(Content::CsrCreate) && verb == "patch" {
        // An apply to an existing CSR keeps its spec, so its dry run shows the old signer; if
        // the CSR is deleted before the real write, the apply creates one with the new signer.
        // A CSR's spec cannot change once created, so nothing legitimate needs this path.
        let why = format!(
            "{}: a server-side apply may create a certificate signing request, which is recorded \
             as the proxy's",
            forbidden_message(who.name, &node_client(info))
        );
        return Err(forbid(info, &info.name, why));
    }
    let refuse_create = may_create && !allowed(snapshot, who, &with_verb(info, "create"));
    if content.is_none() && !refuse_create {
        return Ok(None);
    }
    Ok(Some(WritePlan {
        content,
        refuse_create,
    }))
}

/// With the proxy's own credentials kube-apiserver records the proxy as the requester of a
/// CertificateSigningRequest it creates (`spec.username`, `spec.groups`), and approvers trust
/// what it says. Unless the operator accepts that (`--allow-csr-as-proxy`), every write that may
/// create one is refused: POST, PUT, and a patch that may create (server-side apply). A merge
/// patch of a CSR's labels, and approval and status, are not creations.
pub fn refuse_csr_as_proxy(
    info: &RequestInfo,
    content_type: Option<&[u8]>,
    who: Requester<'_>,
) -> Result<(), Refused> {
    let csr = info.is_resource_request
        && info.api_group == CERTIFICATES
        && info.resource == "certificatesigningrequests"
        && info.subresource.is_empty();
    let creates = match info.verb.as_str() {
        "create" | "update" => true,
        "patch" => patch_may_create(content_type),
        _ => false,
    };
    if !(csr && creates) {
        return Ok(());
    }
    let why = format!(
        "User {} may not create a certificate signing request through this proxy: it would be          recorded with the proxy's identity as its requester. Use --impersonate-upstream (or the          cluster identity impersonate), or start the proxy with --allow-csr-as-proxy to accept it",
        go_quote(who.name)
    );
    Err(forbid(info, &info.name, why))
}

/// The patch types that can never create an object, by the media type kube-apiserver reads:
/// the bytes before the first `;`, compared exactly. Anything else (server-side apply in any
/// encoding, a type kube-apiserver will refuse, a header that is not ASCII) counts as a patch
/// that may create: checking one too many costs a dry run, missing one would be a hole.
pub fn patch_may_create(content_type: Option<&[u8]>) -> bool {
    const NEVER_CREATE: [&[u8]; 3] = [
        b"application/json-patch+json",
        b"application/merge-patch+json",
        b"application/strategic-merge-patch+json",
    ];
    let Some(ct) = content_type else {
        return true;
    };
    let media = match ct.iter().position(|b| *b == b';') {
        Some(i) if i > 0 => &ct[..i],
        _ => ct,
    };
    !NEVER_CREATE.contains(&media)
}

/// `create certificatesigningrequests/nodeclient`, what kube's approver asks of a requester.
fn node_client(info: &RequestInfo) -> RequestInfo {
    let mut nodeclient = probe(info, "create", CERTIFICATES, "certificatesigningrequests", "");
    nodeclient.subresource = "nodeclient".into();
    nodeclient
}

/// The signer whose CSRs kube's own approver issues to requesters it trusts.
const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// Checks the object a dry run of the write returned (`created`: it answered 201).
pub fn check(
    plan: &WritePlan,
    info: &RequestInfo,
    created: bool,
    object: &Value,
    who: Requester<'_>,
    snapshot: &Snapshot,
) -> Result<(), Refused> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(info.name.as_str());
    if plan.refuse_create && created {
        return Err(refuse_create_named(info, who.name, name));
    }
    let Some(content) = plan.content else {
        return Ok(());
    };
    let namespace = info.namespace.as_str();
    match content {
        Content::Role | Content::ClusterRole => {
            let mut escalate = probe(info, "escalate", RBAC, &info.resource, namespace);
            escalate.name = info.name.clone();
            if allowed(snapshot, who, &escalate) {
                return Ok(());
            }
            let rules = rules_in(object)?;
            let owner = snapshot.rules_of(who.name, who.groups, namespace);
            let missing = uncovered(&owner, &rules);
            if !missing.is_empty() {
                return Err(forbid(
                    info,
                    name,
                    escalation_message(who.name, who.groups, &missing),
                ));
            }
            let aggregates = object
                .pointer("/aggregationRule/clusterRoleSelectors")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            if content == Content::ClusterRole
                && aggregates
                && !uncovered(&owner, &full_authority()).is_empty()
            {
                let msg = "must have cluster-admin privileges to use the aggregationRule".to_string();
                return Err(forbid(info, name, msg));
            }
            Ok(())
        }
        Content::RoleBinding | Content::ClusterRoleBinding => {
            let role_ref = object.get("roleRef").unwrap_or(&Value::Null);
            let field = |k: &str| role_ref.get(k).and_then(Value::as_str).unwrap_or("");
            let (kind, ref_group, ref_name) = (field("kind"), field("apiGroup"), field("name"));
            let (resource, role_ns) = match kind {
                "ClusterRole" => ("clusterroles", ""),
                "Role" if !namespace.is_empty() => ("roles", namespace),
                _ => {
                    return Err(forbid(
                        info,
                        name,
                        format!("unsupported roleRef kind {}", go_quote(kind)),
                    ));
                }
            };
            let mut bind = probe(info, "bind", ref_group, resource, namespace);
            bind.name = ref_name.into();
            if allowed(snapshot, who, &bind) {
                return Ok(());
            }
            let Some(rules) = snapshot.role_rules(role_ns, ref_name) else {
                let what = if role_ns.is_empty() { "clusterrole" } else { "role" };
                let msg = format!(
                    "{what}.rbac.authorization.k8s.io {} not found",
                    go_quote(ref_name)
                );
                return Err(forbid(info, name, msg));
            };
            let owner = snapshot.rules_of(who.name, who.groups, namespace);
            let missing = uncovered(&owner, rules);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(forbid(
                    info,
                    name,
                    escalation_message(who.name, who.groups, &missing),
                ))
            }
        }
        Content::CsrCreate => {
            let signer = object.pointer("/spec/signerName").and_then(Value::as_str);
            if (info.verb == "create" || created) && signer == Some(KUBELET_CLIENT_SIGNER) {
                let why = format!(
                    "{}: a certificate signing request is recorded as the proxy's, and kube's \
                     approver trusts that requester with node client certificates",
                    forbidden_message(who.name, &node_client(info))
                );
                return Err(forbid(info, name, why));
            }
            Ok(())
        }
        Content::CsrApproval => {
            signer_check(info, name, object, "/spec/signerName", "approve", who, snapshot)
        }
        // kube-apiserver asks for `sign` when the certificate or the conditions change; without
        // the old object the proxy asks it of every status write.
        Content::CsrSigning => signer_check(info, name, object, "/spec/signerName", "sign", who, snapshot),
        Content::TrustBundle => {
            if object
                .pointer("/spec/signerName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Ok(());
            }
            signer_check(info, name, object, "/spec/signerName", "attest", who, snapshot)
        }
        Content::AdmissionPolicy => {
            let Some(api_version) = object
                .pointer("/spec/paramKind/apiVersion")
                .and_then(Value::as_str)
            else {
                return Ok(());
            };
            let group = param_group(api_version);
            param_check(info, name, group, &["get"], who, snapshot)
        }
        Content::AdmissionPolicyBinding => {
            if object.pointer("/spec/paramRef").is_none_or(Value::is_null) {
                return Ok(());
            }
            // The policy's paramKind is not in this object: ask for every group.
            param_check(info, name, "*", &["get", "list"], who, snapshot)
        }
    }
}

/// A PUT or apply that would create what the user may not create, worded as kube-apiserver's
/// `create` refusal, for the object named in the request.
pub fn refuse_create(info: &RequestInfo, user: &str) -> Refused {
    refuse_create_named(info, user, &info.name)
}

fn refuse_create_named(info: &RequestInfo, user: &str, name: &str) -> Refused {
    let mut create = with_verb(info, "create");
    create.name = name.into();
    Refused {
        message: forbidden_message(user, &create),
        ..refused_for(info, name)
    }
}

/// `apps/v1` → `apps`, `v1` → `` (the core group); anything unparsable → `*`.
fn param_group(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((group, version)) if !group.is_empty() && !version.is_empty() && !version.contains('/') => group,
        None if !api_version.is_empty() => "",
        _ => "*",
    }
}

fn param_check(
    info: &RequestInfo,
    name: &str,
    group: &str,
    verbs: &[&str],
    who: Requester<'_>,
    snapshot: &Snapshot,
) -> Result<(), Refused> {
    let wanted: Vec<PolicyRule> = vec![PolicyRule {
        verbs: verbs.iter().map(|v| (*v).to_string()).collect(),
        api_groups: vec![group.to_string()],
        resources: vec!["*".into()],
        ..PolicyRule::default()
    }];
    let owner = snapshot.rules_of(who.name, who.groups, "");
    if uncovered(&owner, &wanted).is_empty() {
        return Ok(());
    }
    let msg = format!(
        "User {} must be allowed to {} every resource of API group {} across the cluster to \
         write an admission policy or binding with parameters through this proxy",
        go_quote(who.name),
        verbs.join(" and "),
        go_quote(group)
    );
    Err(forbid(info, name, msg))
}

fn signer_check(
    info: &RequestInfo,
    name: &str,
    object: &Value,
    pointer: &str,
    verb: &str,
    who: Requester<'_>,
    snapshot: &Snapshot,
) -> Result<(), Refused> {
    let signer = object.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let mut exact = probe(info, verb, CERTIFICATES, "signers", "");
    exact.name = signer.into();
    // kube-apiserver also accepts `<domain>/*` for every signer of a domain.
    let mut domain = exact.clone();
    domain.name = signer
        .split_once('/')
        .map(|(d, _)| format!("{d}/*"))
        .unwrap_or_default()
        .as_str()
        .into();
    if allowed(snapshot, who, &exact) || (!domain.name.is_empty() && allowed(snapshot, who, &domain)) {
        return Ok(());
    }
    let msg = format!(
        "user not permitted to {verb} requests with signerName {}",
        go_quote(signer)
    );
    Err(forbid(info, name, msg))
}

/// The `rules` of a Role or ClusterRole object.
fn rules_in(object: &Value) -> Result<Vec<PolicyRule>, Refused> {
    match object.get("rules") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Refused {
            message: format!("the role's rules could not be read: {e}"),
            group: RBAC.into(),
            kind: String::new(),
            name: String::new(),
        }),
    }
}

fn allowed(snapshot: &Snapshot, who: Requester<'_>, info: &RequestInfo) -> bool {
    snapshot.authorize(who.name, who.groups, info) == Decision::Allow
}

/// A resource request for the authorizer (kube's `AttributesRecord`).
fn probe(info: &RequestInfo, verb: &str, group: &str, resource: &str, namespace: &str) -> RequestInfo {
    RequestInfo {
        is_resource_request: true,
        verb: verb.into(),
        api_prefix: info.api_prefix.clone(),
        api_group: group.into(),
        api_version: "*".into(),
        namespace: namespace.into(),
        resource: resource.into(),
        ..RequestInfo::default()
    }
}

fn with_verb(info: &RequestInfo, verb: &str) -> RequestInfo {
    let mut i = info.clone();
    i.verb = verb.into();
    i
}

fn refused_for(info: &RequestInfo, name: &str) -> Refused {
    Refused {
        message: String::new(),
        group: info.api_group.to_string(),
        kind: info.resource.to_string(),
        name: if name.is_empty() {
            info.name.to_string()
        } else {
            name.to_string()
        },
    }
}

/// `apierrors.NewForbidden(groupResource, name, err)`.
fn forbid(info: &RequestInfo, name: &str, why: String) -> Refused {
    Refused {
        message: forbidden_head(&info.resource, &info.api_group, name) + &why,
        ..refused_for(info, name)
    }
}

#[cfg(test)]
mod tests;
