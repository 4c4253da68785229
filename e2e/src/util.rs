//! Small helpers: running commands with useful errors, finding the
//! Switchyard binaries (never building them), polling until a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Runs `cmd`, returning stdout; an error names the command and carries its
/// stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `run` over a slice: `sh(&["ip", "link"])`.
pub fn sh(args: &[&str]) -> Result<String> {
    let (program, rest) = args.split_first().context("empty command")?;
    run(Command::new(program).args(rest))
}

/// `ip netns exec NS ARGS...` as a command (not run).
pub fn in_netns(netns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).args(args);
    cmd
}

/// Runs `ARGS` inside `netns`, whatever the exit status.
pub fn netns_output(netns: &str, args: &[&str]) -> Result<Output> {
    in_netns(netns, args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {args:?} in {netns}"))
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Polls `f` every 50-200 ms until it returns `Some`, or fails naming `what`
/// after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Whether a named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Deletes a named network namespace if it exists.
pub fn delete_netns(name: &str) {
    if netns_exists(name) {
        let _ = sh(&["ip", "netns", "del", name]);
    }
}

/// The two Switchyard node binaries the sandbox executes.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub node: PathBuf,
    pub cni: PathBuf,
}

/// The environment variable naming the directory that holds
/// `switchyard-node` and `switchyard-cni`.
pub const BIN_DIR_ENV: &str = "SWITCHYARD_BIN_DIR";

fn in_dir(dir: &Path) -> Binaries {
    Binaries {
        node: dir.join("switchyard-node"),
        cni: dir.join("switchyard-cni"),
    }
}

/// Finds `switchyard-node` and `switchyard-cni`; builds nothing.
///
/// 1. `explicit` (`switchyard-sandbox up --bin-dir DIR`) when given;
/// 2. otherwise `$SWITCHYARD_BIN_DIR` when set;
/// 3. otherwise beside the running executable: the directory of
///    `switchyard-sandbox` itself, or the Cargo profile directory
///    (`target/debug`) for a test (`target/debug/deps/TEST`) or an example
///    (`target/debug/examples/EXAMPLE`).
///
/// A missing binary is an error naming the command that builds it.
/// `./e2e/scripts/demo` and `./e2e/scripts/test-all` build them up front
/// (`cargo test --workspace` builds every package's binaries); a lone
/// `cargo test -p switchyard-e2e` does not, since Cargo builds only the
/// tested package's own binaries.
pub fn binaries(explicit: Option<&Path>) -> Result<Binaries> {
    if let Some(dir) = explicit {
        return check_dir(dir, "--bin-dir");
    }
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return check_dir(Path::new(&dir), BIN_DIR_ENV);
    }
    let exe = std::env::current_exe().context("finding the current executable")?;
    let dir = sibling_dir(&exe).context("executable without a directory")?;
    let b = in_dir(dir);
    let missing: Vec<&str> = [(&b.node, "switchyard-node"), (&b.cni, "switchyard-cni")]
        .into_iter()
        .filter(|(p, _)| !p.is_file())
        .map(|(_, n)| n)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} not found in {} (looked beside {}); build {}: `{}` (or point {BIN_DIR_ENV} or --bin-dir at a directory that holds both)",
            missing.join(" and "),
            dir.display(),
            exe.display(),
            if missing.len() == 1 { "it" } else { "them" },
            build_command(dir)
        );
    }
    Ok(b)
}

fn check_dir(dir: &Path, via: &str) -> Result<Binaries> {
    let b = in_dir(dir);
    for p in [&b.node, &b.cni] {
        if !p.is_file() {
            bail!(
                "{via}={}: {} is missing (build: `cargo build --release -p switchyard-node --bins`, then use target/release)",
                dir.display(),
                p.display()
            );
        }
    }
    Ok(b)
}

/// Where a binary's siblings live: its directory, or the profile
/// directory above Cargo's `deps/` and `examples/`.
pub fn sibling_dir(exe: &Path) -> Option<&Path> {
    let dir = exe.parent()?;
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("deps" | "examples") => dir.parent(),
        _ => Some(dir),
    }
}

/// The command that puts the node binaries into `dir`: for a Cargo
/// profile directory (`target/debug`, `target/release`, ...) the cargo
/// build of that profile; elsewhere a release build and a copy.
pub fn build_command(dir: &Path) -> String {
    let in_target = dir
        .parent()
        .is_some_and(|t| t.join("CACHEDIR.TAG").exists());
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "cargo build -p switchyard-node --bins".to_string(),
        Some("release") => "cargo build --release -p switchyard-node --bins".to_string(),
        Some(profile) if in_target => {
            format!("cargo build --profile {profile} -p switchyard-node --bins")
        }
        _ => format!(
            "cargo build --release -p switchyard-node --bins && cp target/release/switchyard-node target/release/switchyard-cni {}",
            dir.display()
        ),
    }
}

/// Writes a file atomically: temporary name, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_of_tests_and_examples_are_in_the_profile_dir() {
        let p = Path::new("/w/target/debug/deps/cli-0123");
        assert_eq!(sibling_dir(p), Some(Path::new("/w/target/debug")));
        let p = Path::new("/w/target/release/examples/pod_ready");
        assert_eq!(sibling_dir(p), Some(Path::new("/w/target/release")));
        let p = Path::new("/usr/local/bin/switchyard-sandbox");
        assert_eq!(sibling_dir(p), Some(Path::new("/usr/local/bin")));
    }

    #[test]
    fn the_build_command_matches_the_profile() {
        assert_eq!(
            build_command(Path::new("/w/target/debug")),
            "cargo build -p switchyard-node --bins"
        );
        assert_eq!(
            build_command(Path::new("/w/target/release")),
            "cargo build --release -p switchyard-node --bins"
        );
        let target = tempfile::tempdir().unwrap();
        std::fs::write(target.path().join("CACHEDIR.TAG"), "").unwrap();
        assert_eq!(
            build_command(&target.path().join("bench")),
            "cargo build --profile bench -p switchyard-node --bins"
        );
        let elsewhere = build_command(Path::new("/opt/sy"));
        assert!(
            elsewhere.starts_with("cargo build --release"),
            "{elsewhere}"
        );
        assert!(elsewhere.ends_with("switchyard-cni /opt/sy"), "{elsewhere}");
    }

    #[test]
    fn an_explicit_directory_must_hold_both() {
        let dir = tempfile::tempdir().unwrap();
        let e = binaries(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("switchyard-node"), "{e}");
        std::fs::write(dir.path().join("switchyard-node"), "").unwrap();
        let e = binaries(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("switchyard-cni"), "{e}");
        std::fs::write(dir.path().join("switchyard-cni"), "").unwrap();
        let b = binaries(Some(dir.path())).unwrap();
        assert_eq!(b.node, dir.path().join("switchyard-node"));
    }
}
