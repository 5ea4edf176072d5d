//! Shared-image transfer against `scp`, in one run: `b9 push` of a cached
//! version (image + `.b9si`) to a real OpenSSH server on 127.0.0.1 against
//! `scp` of the same two files to the same server, and `b9 pull` of it
//! into an empty cache against `scp` of the same two files back. Both sides
//! use their default cipher (chacha20-poly1305) and key (ed25519), and each
//! timing includes starting the program, connecting and authenticating.
//! Prints the ratios b9/scp for upload and download (target: <= 1.2, the
//! issue's; <= 1.0 is the goal).
//!
//! `cargo bench --bench repo` pushes a 1 GiB raw image holding 256 MiB of
//! scattered data; under `cargo test` (no `--bench` argument) it runs a
//! 16 MiB image once as a smoke test.

#[allow(dead_code)]
#[path = "../tests/support/sshd.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::process::Command;

use b9::lang::syntax::{FileSystem, ImageType};
use b9::repo::{LocalRepo, SharedImage, IMAGES_DIR};

mod common;
use common::{alternate, make_sparse, report, time};

/// The issue's target for b9/scp.
const TARGET: f64 = 1.2;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if let Err(e) = run(full) {
        eprintln!("repo bench: {e}");
        std::process::exit(1);
    }
}

/// Removes the files of a directory (not the directory).
fn empty_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

fn same_content(a: &Path, b: &Path) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    if read(a)? != read(b)? {
        return Err(format!("{} and {} differ", a.display(), b.display()));
    }
    Ok(())
}

fn run(full: bool) -> Result<(), String> {
    let (size, data, runs) = if full {
        (1u64 << 30, 256u64 << 20, 5)
    } else {
        (16u64 << 20, 4u64 << 20, 1)
    };
    let fx = sshd::Fixture::new()?;
    let b9 = env!("CARGO_BIN_EXE_b9");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let key = fx.path("id_ed25519");
    let home = fx.path("home");
    let cache = fx.path("cache");
    fx.write_config(&home, &cache, "Nothing", &key)?;

    // The version to push, put into the cache as a build's `Share` would.
    let img = SharedImage {
        name: "bench".into(),
        date: "2024-01-01-00:00:00".into(),
        build_id: "0123ABCD-89ABCDEF".into(),
        image_type: ImageType::Raw,
        fs: FileSystem::Ext4,
    };
    let src = fx.path("src.raw");
    make_sparse(&src, size, data)?;
    let local = LocalRepo::open(&cache).map_err(|e| e.to_string())?;
    local.share(&img, &src, None).map_err(|e| e.to_string())?;
    // Reference copies outside the cache (the pulls replace the cached ones).
    let image = fx.path("reference.raw");
    let info = fx.path("reference.b9si");
    std::fs::copy(local.image_path(&img), &image).map_err(|e| e.to_string())?;
    std::fs::copy(local.info_path(&img), &info).map_err(|e| e.to_string())?;

    let b9_remote = PathBuf::from(fx.remote_dir()).join(IMAGES_DIR);
    let scp_remote = fx.path("scp-remote");
    let scp_local = fx.path("scp-local");
    std::fs::create_dir_all(&scp_local).map_err(|e| e.to_string())?;
    let scp = || {
        let mut c = Command::new("scp");
        c.args(["-q", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-P", &fx.sshd.port.to_string(), "-i", &s(&key)]);
        c
    };
    let at_server = |p: &Path| format!("root@127.0.0.1:{}", p.display());
    let b9_cmd = |args: &[&str]| {
        let mut c = Command::new(b9);
        c.args(args).env("HOME", &home);
        c
    };
    // The first connection records the host key (untimed).
    time(&mut b9_cmd(&["-r", sshd::REPO_ID, "pull"]))?;

    println!(
        "image: {} MiB raw, {} MiB data; both sides also copy the .b9si",
        size >> 20,
        data >> 20
    );
    // Each run writes new files: nobody pays for replacing old ones.
    let upload = alternate(
        runs,
        || {
            empty_dir(&b9_remote)?;
            time(&mut b9_cmd(&["-r", sshd::REPO_ID, "push", "bench"]))
        },
        || {
            empty_dir(&scp_remote)?;
            time(
                scp()
                    .arg(&image)
                    .arg(&info)
                    .arg(at_server(&scp_remote.join(""))),
            )
        },
    )?;
    report("upload", &upload, "scp", TARGET);

    let cached = local.image_path(&img);
    let remote_image = b9_remote.join(img.image_file_name());
    let remote_info = b9_remote.join(img.info_file_name());
    let download = alternate(
        runs,
        || {
            empty_dir(&local.images_dir())?;
            time(&mut b9_cmd(&["-r", sshd::REPO_ID, "pull", "bench"]))
        },
        || {
            empty_dir(&scp_local)?;
            time(
                scp()
                    .arg(at_server(&remote_image))
                    .arg(at_server(&remote_info))
                    .arg(&scp_local),
            )
        },
    )?;
    report("download", &download, "scp", TARGET);

    // Both did the whole work.
    for (a, b) in [
        (&image, &remote_image),
        (&info, &remote_info),
        (&image, &cached),
        (&info, &local.info_path(&img)),
        (&image, &scp_remote.join("reference.raw")),
        (&image, &scp_local.join(img.image_file_name())),
    ] {
        same_content(a, b)?;
    }
    Ok(())
}
