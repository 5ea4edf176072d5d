//! Sparse volume transfers of the remote libvirt path against `virsh
//! vol-upload --sparse` / `vol-download --sparse` on the same pool of a
//! host of `fixtures/libvirt-hosts` (a session libvirtd over `qemu+ssh`),
//! both run as the fixture's client user, each timing including starting
//! the program and connecting. Prints the ratios b9/virsh (target: <= 1.0).
//!
//! `cargo bench --bench farm` moves a 1 GiB image holding 500 MiB of
//! scattered data; under `cargo test` it moves 16 MiB once as a smoke test.
//! Needs root (the fixture makes users and an sshd).

use std::path::Path;
use std::process::Command;

mod common;
use common::{alternate, make_sparse, report, time};

/// The issue's target for b9/virsh.
const TARGET: f64 = 1.0;

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
    let owner = format!("{client}:{client}");
    Command::new("chown")
        .args(["-R", &owner])
        .arg(&dir)
        .status()
        .map_err(|e| e.to_string())?;
    let helper = repo.join("target/release/b9-libvirt");
    let helper = if helper.exists() {
        helper
    } else {
        repo.join("target/debug/b9-libvirt")
    };
    let as_client = |script: String| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &client, "--regid", &client, "--init-groups"])
            .args(["env", &format!("HOME={home}"), "sh", "-c", &script]);
        c
    };
    let img = image.display().to_string();
    let got = dir.join("out.raw").display().to_string();
    let b9 = |lines: &[String]| {
        // Fails when any reply is `Failed`.
        format!(
            "! (printf '%s\\n' {} | {} --protocol 2 | grep Failed >&2)",
            quote(lines),
            helper.display()
        )
    };
    let pool = format!(r#"{{"Pool":{{"uri":"{uri}","pool":"b9"}}}}"#);
    let upload_b9 = b9(&[
        pool.clone(),
        format!(r#"{{"Upload":{{"name":"bench-b9","path":"{img}","keep":false}}}}"#),
        r#"{"Delete":{"name":"bench-b9"}}"#.to_string(),
    ]);
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
    time(&mut as_client(b9(&[
        pool.clone(),
        format!(r#"{{"Upload":{{"name":"bench-src","path":"{img}","keep":false}}}}"#),
    ])))?;
    let download_b9 = b9(&[
        pool.clone(),
        format!(r#"{{"Download":{{"name":"bench-src","path":"{got}"}}}}"#),
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
    time(&mut as_client(b9(&[
        pool,
        r#"{"Delete":{"name":"bench-src"}}"#.to_string(),
    ])))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Lines as single-quoted shell words.
fn quote(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("'{}'", l.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
