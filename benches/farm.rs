//! The remote libvirt path on a host of `fixtures/libvirt-hosts` (a
//! session libvirtd over `qemu+ssh`), everything run as the fixture's
//! client user:
//!
//! - sparse volume transfers (b9's helper against `virsh vol-upload
//!   --sparse` / `vol-download --sparse` on the same pool, each timing
//!   including starting the program and connecting): ratio b9/virsh,
//!   target <= 1.0;
//! - the run-time overhead of the remote path: `b9 build --no-cache` of a
//!   one-command script on that host against the same build on the
//!   client's local libvirt (`qemu:///session`), both under TCG, after one
//!   untimed run of each (the appliance built and uploaded): ratio
//!   remote/local, target <= 1.5.
//!
//! `cargo bench --bench farm` moves a 1 GiB image holding 500 MiB of
//! scattered data and builds 5 times each; under `cargo test` it moves
//! 16 MiB once and builds once each, as a smoke test. Measure with a
//! release build (`cargo build --release --workspace` first: the bench
//! uses the helper of its own profile, and fails when any request gets no
//! reply or a `Failed` one). Needs root (the fixture makes users and an
//! sshd).

use std::path::Path;
use std::process::Command;

use b9_protocol::libvirt::{Request, VERSION};

mod common;
#[allow(dead_code)]
#[path = "../tests/common/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../tests/common/guest.rs"]
mod guest;
use common::{alternate, make_sparse, report, time};

/// The issue's target for b9/virsh.
const TARGET: f64 = 1.0;
/// The issue's target for the remote path over the local one.
const RUN_TARGET: f64 = 1.5;

fn main() {
    if let Err(e) = bench() {
        eprintln!("farm bench: {e}");
        std::process::exit(1);
    }
}

fn bench() -> Result<(), String> {
    let full = std::env::args().any(|a| a == "--bench");
    let (size, data, rounds) = if full {
        (1u64 << 30, 500u64 << 20, 5)
    } else {
        (16 << 20, 8 << 20, 1)
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("fixtures/libvirt-hosts"))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let env = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('\'').to_string())
            .ok_or(format!("no {key}"))
    };
    let (uri, client, home) = (get("HOST_A")?, get("CLIENT")?, get("CLIENT_HOME")?);
    let dir = Path::new(&home).join(format!("farm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let image = dir.join("in.raw");
    make_sparse(&image, size, data)?;
    chown(&dir, &client)?;
    // The helper of this build's profile (`target/PROFILE/deps/farm-*`):
    // another profile's may be stale and speak another protocol version.
    let helper = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("b9-libvirt")))
        .filter(|h| h.exists())
        .ok_or("no b9-libvirt beside this bench's profile: build the workspace in it first (`cargo build --release --workspace`)")?;
    let as_client = |script: String| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &client, "--regid", &client, "--init-groups"])
            .args(["env", &format!("HOME={home}"), "sh", "-c", &script]);
        c
    };
    let img = image.display().to_string();
    let got = dir.join("out.raw").display().to_string();
    let b9 = |requests: &[Request]| {
        let lines: Vec<String> = requests
            .iter()
            .filter_map(|r| serde_json::to_string(r).ok())
            .collect();
        // Fails unless every request got a reply and none is `Failed`
        // (`Progress` lines are not replies).
        format!(
            "replies=$(printf '%s\\n' {} | {} --protocol {VERSION} | grep -v Progress) && \
             [ \"$(printf '%s\\n' \"$replies\" | grep -c .)\" -eq {} ] && \
             ! printf '%s\\n' \"$replies\" | grep Failed >&2",
            quote(&lines),
            helper.display(),
            lines.len()
        )
    };
    let pool = Request::Pool {
        uri: uri.clone(),
        pool: "b9".into(),
    };
    let upload = |name: &str| Request::Upload {
        name: name.into(),
        path: img.clone(),
    };
    let delete = |name: &str| Request::Delete { name: name.into() };
    let upload_b9 = b9(&[pool.clone(), upload("bench-b9"), delete("bench-b9")]);
    let upload_virsh = format!(
        "virsh -q -c '{uri}' vol-create-as b9 bench-virsh {size} --format raw >/dev/null && \
         virsh -q -c '{uri}' vol-upload --sparse --pool b9 bench-virsh {img} && \
         virsh -q -c '{uri}' vol-delete --pool b9 bench-virsh >/dev/null"
    );
    let up = alternate(
        rounds,
        || time(&mut as_client(upload_b9.clone())),
        || time(&mut as_client(upload_virsh.clone())),
    )?;
    let what = format!("{} MiB sparse ({} MiB data)", size >> 20, data >> 20);
    report(
        &format!("upload {what}"),
        &up,
        "virsh vol-upload --sparse",
        TARGET,
    );
    // One volume downloaded by both.
    time(&mut as_client(b9(&[pool.clone(), upload("bench-src")])))?;
    let download_b9 = b9(&[
        pool.clone(),
        Request::Download {
            name: "bench-src".into(),
            path: got.clone(),
        },
    ]);
    let download_virsh =
        format!("virsh -q -c '{uri}' vol-download --sparse --pool b9 bench-src {got}");
    let down = alternate(
        rounds,
        || time(&mut as_client(download_b9.clone())),
        || time(&mut as_client(download_virsh.clone())),
    )?;
    report(
        &format!("download {what}"),
        &down,
        "virsh vol-download --sparse",
        TARGET,
    );
    time(&mut as_client(b9(&[pool, delete("bench-src")])))?;
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_file(&got);
    let runs = if full { 5 } else { 1 };
    let result = run_overhead(repo, &dir, &uri, runs, &get, &as_client);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `b9 build` of a one-command script on the remote host `uri` against
/// the client's local libvirt, `runs` times each, after one untimed run
/// when more than one (the smoke test under `cargo test` runs once).
fn run_overhead(
    repo: &Path,
    dir: &Path,
    uri: &str,
    runs: usize,
    get: &dyn Fn(&str) -> Result<String, String>,
    as_client: &dyn Fn(String) -> Command,
) -> Result<(), String> {
    let b9 = Path::new(env!("CARGO_BIN_EXE_b9"));
    let root = dir.join("root.raw");
    let made = Command::new(repo.join("scripts/busybox-root"))
        .arg(&root)
        .env("B9", b9)
        .output()
        .map_err(|e| format!("scripts/busybox-root: {e}"))?;
    if !made.status.success() {
        return Err(String::from_utf8_lossy(&made.stderr).into_owned());
    }
    for (name, connection) in [("remote", uri), ("local", "qemu:///session")] {
        std::fs::write(
            dir.join(format!("{name}.conf")),
            format!(
                "{}[vm]\nbackend: libvirt\naccel: tcg\nkernel: {}\nmodules_dir: {}\n\
                 memory_mb: 512\ncpus: 1\nqemu_binary:\n\n[libvirt]\nconnection: {connection}\n",
                guest::global_section(900),
                get("KERNEL")?,
                get("MODULES")?
            ),
        )
        .map_err(|e| e.to_string())?;
    }
    std::fs::write(
        dir.join("one.b9"),
        r#"Artifact (IID "one")
  (VmImages
     [ ImageTarget Transient
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     ]
     (VmScript X86_64 [] (Run "true" [])))
"#,
    )
    .map_err(|e| e.to_string())?;
    chown(dir, &get("CLIENT")?)?;
    let build = |conf: &str| {
        as_client(format!(
            "cd '{}' && '{}' -c {conf}.conf build --no-cache -f one.b9",
            dir.display(),
            b9.display()
        ))
    };
    if runs > 1 {
        time(&mut build("remote"))?;
        time(&mut build("local"))?;
    }
    let rounds = alternate(
        runs,
        || time(&mut build("remote")),
        || time(&mut build("local")),
    )?;
    report("one-command script", &rounds, "local libvirt", RUN_TARGET);
    Ok(())
}

/// Gives `dir` and everything in it to `user`.
fn chown(dir: &Path, user: &str) -> Result<(), String> {
    let owner = format!("{user}:{user}");
    let st = Command::new("chown")
        .args(["-R", &owner])
        .arg(dir)
        .status()
        .map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("chown {owner} {} failed", dir.display()))
    }
}

/// Lines as single-quoted shell words.
fn quote(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("'{}'", l.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
