//! Every fuzz target's body (`fuzz/src`), run on stable over its seed corpus (`fuzz/seeds`):
//! the seeds are small known-interesting inputs, and an input that once crashed a target is
//! kept there, so it stays a test here. The fuzzing itself is `fuzz/run` (nightly).

#[path = "../fuzz/src/access_line.rs"]
mod access_line;
#[path = "../fuzz/src/authn_config.rs"]
mod authn_config;
#[path = "../fuzz/src/claims.rs"]
mod claims;
#[path = "../fuzz/src/clusters_file.rs"]
mod clusters_file;
#[path = "../fuzz/src/h2_guard.rs"]
mod h2_guard;
#[path = "../fuzz/src/headers.rs"]
mod headers;
#[path = "../fuzz/src/jws.rs"]
mod jws;
#[path = "../fuzz/src/request_info.rs"]
mod request_info;
#[path = "../fuzz/src/role_file.rs"]
mod role_file;
#[path = "../fuzz/src/self_review.rs"]
mod self_review;

type Target = (&'static str, fn(&[u8]));

#[test]
fn every_fuzz_target_passes_its_seeds() {
    let targets: [Target; 10] = [
        ("access_line", access_line::run),
        ("claims", claims::run),
        ("clusters_file", clusters_file::run),
        ("headers", headers::run),
        ("jws", jws::run),
        ("request_info", request_info::run),
        ("role_file", role_file::run),
        ("authn_config", authn_config::run),
        ("self_review", self_review::run),
        ("h2_guard", h2_guard::run),
    ];
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, run) in targets {
        let mut count = 0;
        for entry in std::fs::read_dir(seeds.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")) {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "{} fails its target", path.display());
            count += 1;
        }
        assert!(count > 0, "{name} has no seeds");
    }
}
