//! Small helpers: running commands with useful errors, finding the
//! Switchyard binaries, polling until a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
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

/// Finds `switchyard-node` and `switchyard-cni`:
///
/// 1. `$SWITCHYARD_BIN_DIR` when set;
/// 2. otherwise the Cargo profile directory of the running executable
///    (`target/debug` for `target/debug/deps/TEST` and
///    `target/debug/examples/EXAMPLE`, or the directory of
///    `switchyard-sandbox` itself). When the workspace this crate was
///    built from is still there, `cargo build -p switchyard-node --bins`
///    (same profile, same target directory) runs first, once per process:
///    a no-op when they are fresh, and it means `cargo test -p
///    switchyard-e2e` never runs a stale or missing agent. (Cargo releases
///    the build lock while it runs test binaries, so this does not block.)
pub fn binaries() -> Result<Binaries> {
    static FOUND: OnceLock<std::result::Result<Binaries, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| find_binaries().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn in_dir(dir: &Path) -> Binaries {
    Binaries {
        node: dir.join("switchyard-node"),
        cni: dir.join("switchyard-cni"),
    }
}

fn find_binaries() -> Result<Binaries> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_BIN_DIR") {
        let b = in_dir(Path::new(&dir));
        if !b.node.exists() || !b.cni.exists() {
            bail!(
                "SWITCHYARD_BIN_DIR={}: switchyard-node or switchyard-cni missing",
                Path::new(&dir).display()
            );
        }
        return Ok(b);
    }
    let exe = std::env::current_exe().context("finding the current executable")?;
    let mut dir = exe.parent().context("executable without a directory")?;
    if matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("deps" | "examples")
    ) {
        dir = dir.parent().context("deps without a parent")?;
    }
    let b = in_dir(dir);
    let root = workspace_root().filter(|r| r.join("node-agent").exists());
    let (Some(root), Some(target)) = (root, dir.parent()) else {
        if b.node.exists() && b.cni.exists() {
            return Ok(b);
        }
        bail!(
            "switchyard-node/switchyard-cni not found beside {} (set SWITCHYARD_BIN_DIR)",
            exe.display()
        );
    };
    let release = dir.file_name().and_then(|n| n.to_str()) == Some("release");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "switchyard-node",
            "--bins",
            "--target-dir",
        ])
        .arg(target);
    if release {
        build.arg("--release");
    }
    let status = build
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", describe(&build)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(&build));
    }
    if !b.node.exists() || !b.cni.exists() {
        bail!("cargo build did not produce {}", b.node.display());
    }
    Ok(b)
}

/// The workspace root this crate was compiled from, if it still exists.
pub fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    root.join("Cargo.toml").exists().then_some(root)
}

/// Writes a file atomically: temporary name, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
