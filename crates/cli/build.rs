//! Records the git commit the binary is built from, for `redrive --version`.
//! Builds outside a git checkout (a source tarball, a container context
//! without .git) say "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let commit = std::env::var("REDRIVE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=REDRIVE_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=REDRIVE_GIT_COMMIT");
    // Rebuild when HEAD moves: HEAD itself, the branch it points to, and
    // packed refs (paths resolved by git, so worktrees work too).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
