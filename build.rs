//! Stamps the binary with the commit it was built from and that commit's date, for `--version`.
//! `KOP_GIT_COMMIT` and `KOP_BUILD_DATE` win (an image build without `.git` passes them);
//! otherwise git is asked; otherwise "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    let commit = std::env::var("KOP_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let date = std::env::var("KOP_BUILD_DATE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["log", "-1", "--format=%cI"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KOP_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=KOP_BUILD_DATE={date}");
    println!("cargo:rerun-if-env-changed=KOP_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=KOP_BUILD_DATE");
    // Only paths that exist: a missing one would make cargo rebuild every time.
    for path in [".git/HEAD", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(head) = std::fs::read_to_string(".git/HEAD")
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| format!(".git/{}", r.trim())))
        && std::path::Path::new(&head).exists()
    {
        println!("cargo:rerun-if-changed={head}");
    }
}
