//! Stamps the binary with the commit it was built from, for `tidings --version`
//! ("tidings 0.1.0 (abc1234 2026-12-06)"). The commit comes from `TIDINGS_BUILD_COMMIT`
//! and `TIDINGS_BUILD_DATE` when set (a container build, where `.git` is not in the
//! context), else from git; without either (a source tarball) it is `unknown`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TIDINGS_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=TIDINGS_BUILD_DATE");
    let commit = env("TIDINGS_BUILD_COMMIT").or_else(|| git(&["rev-parse", "--short=7", "HEAD"]));
    let date = env("TIDINGS_BUILD_DATE").or_else(|| {
        commit.as_ref()?;
        git(&["log", "-1", "--format=%cd", "--date=short"])
    });
    let stamp = match (commit, date) {
        (Some(c), Some(d)) => format!("{c} {d}"),
        (Some(c), None) => c,
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=TIDINGS_BUILD={stamp}");
    watch_git_head();
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()))
}

/// Runs git in the crate's directory; `None` when git is missing or this is no repository.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Builds again when HEAD moves: a new commit, a checkout, a worktree's own HEAD.
fn watch_git_head() {
    let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) else {
        return;
    };
    let git_dir = PathBuf::from(git_dir);
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    let common = git(&["rev-parse", "--git-common-dir"])
        .map(|c| {
            let p = PathBuf::from(c);
            if p.is_absolute() {
                p
            } else {
                manifest_dir().join(p)
            }
        })
        .unwrap_or_else(|| git_dir.clone());
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let ref_file = common.join(&head_ref);
        if ref_file.exists() {
            println!("cargo:rerun-if-changed={}", ref_file.display());
        }
    }
    let packed = common.join("packed-refs");
    if packed.exists() {
        println!("cargo:rerun-if-changed={}", packed.display());
    }
}
