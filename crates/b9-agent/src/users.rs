//! Users and groups from the image's own `/etc/passwd` and `/etc/group`
//! (no NSS: the appliance is not the image), and the image's shell.

use std::path::{Path, PathBuf};

/// Who a command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups, the primary group included.
    pub groups: Vec<u32>,
    /// Home directory inside the image.
    pub home: String,
    /// Login shell (for `SHELL`).
    pub shell: String,
}

/// One `/etc/passwd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// Parses `/etc/passwd` text; malformed lines are skipped.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

/// The groups of user `name` with primary group `gid`, from `/etc/group`
/// text: the primary group first, then every group listing the user.
fn groups_of(text: &str, name: &str, gid: u32) -> Vec<u32> {
    let mut groups = vec![gid];
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        let Ok(g) = f[2].parse::<u32>() else {
            continue;
        };
        if f[3].split(',').any(|m| m.trim() == name) && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

/// Looks `user` up in the image's files; `None` = root.
///
/// A name missing from `/etc/passwd` that is a number is taken as a uid
/// (with the same gid) when no entry has that uid either.
pub fn lookup(passwd: &str, group: &str, user: Option<&str>) -> Result<Identity, String> {
    let user = user.unwrap_or("root");
    let entries = parse_passwd(passwd);
    let entry = entries
        .iter()
        .find(|e| e.name == user)
        .or_else(|| {
            let uid: u32 = user.parse().ok()?;
            entries.iter().find(|e| e.uid == uid)
        })
        .cloned();
    let entry = match (entry, user.parse::<u32>()) {
        (Some(e), _) => e,
        (None, Ok(uid)) => PasswdEntry {
            name: user.to_string(),
            uid,
            gid: uid,
            home: "/".to_string(),
            shell: "/bin/sh".to_string(),
        },
        (None, Err(_)) if user == "root" => PasswdEntry {
            name: "root".to_string(),
            uid: 0,
            gid: 0,
            home: "/root".to_string(),
            shell: "/bin/sh".to_string(),
        },
        (None, Err(_)) => return Err(format!("user {user:?} is not in the image's /etc/passwd")),
    };
    Ok(Identity {
        groups: groups_of(group, &entry.name, entry.gid),
        name: entry.name,
        uid: entry.uid,
        gid: entry.gid,
        home: if entry.home.is_empty() {
            "/".to_string()
        } else {
            entry.home
        },
        shell: if entry.shell.is_empty() {
            "/bin/sh".to_string()
        } else {
            entry.shell
        },
    })
}

/// Looks `user` up in the files of the image mounted at `root`.
pub fn lookup_in(root: &Path, user: Option<&str>) -> Result<Identity, String> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    lookup(&read("etc/passwd"), &read("etc/group"), user)
}

/// Resolves `path` (absolute, inside the image) under `root`, following
/// symbolic links as the image sees them; the host path of the result.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    resolve(root, path, false)
}

/// Like [`resolve_in_root`], but missing components are taken as they are
/// (where a dangling link points).
pub fn resolve_partial(root: &Path, path: &str) -> Option<PathBuf> {
    resolve(root, path, true)
}

fn resolve(root: &Path, path: &str, allow_missing: bool) -> Option<PathBuf> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = components(path).into_iter().rev().collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let host = parts
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&c);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(_) if allow_missing => {
                parts.push(c);
                continue;
            }
            Err(_) => return None,
        };
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&host).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                parts.clear();
            }
            todo.extend(components(target).into_iter().rev());
        } else {
            parts.push(c);
        }
    }
    Some(parts.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// The non-empty, non-`.` components of a slash-separated path.
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// The shell for `Run` lines: bash where the image has it, else `/bin/sh`.
pub fn shell(root: &Path) -> &'static str {
    for candidate in ["/bin/bash", "/usr/bin/bash"] {
        if is_executable(resolve_in_root(root, candidate)) {
            return candidate;
        }
    }
    "/bin/sh"
}

fn is_executable(path: Option<PathBuf>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        alice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n\
        nohome:x:1001:100:::\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:bob,alice\n\
        users:x:100:\n\
        alice:x:1000:\n\
        audio:x:29:carol, alice\n\
        bad:x:zz:alice\n";

    #[test]
    fn root_by_default() {
        let id = lookup(PASSWD, GROUP, None).ok();
        assert_eq!(
            id.map(|i| (i.uid, i.gid, i.groups, i.home)),
            Some((0, 0, vec![0], "/root".to_string()))
        );
    }

    #[test]
    fn user_with_supplementary_groups() {
        let id = lookup(PASSWD, GROUP, Some("alice")).ok();
        assert_eq!(
            id,
            Some(Identity {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 29],
                home: "/home/alice".into(),
                shell: "/bin/sh".into(),
            })
        );
    }

    #[test]
    fn empty_home_and_shell_get_defaults() {
        let id = lookup(PASSWD, GROUP, Some("nohome")).ok();
        assert_eq!(
            id.map(|i| (i.home, i.shell, i.groups)),
            Some(("/".into(), "/bin/sh".into(), vec![100]))
        );
    }

    #[test]
    fn unknown_user_is_an_error_numeric_is_a_uid() {
        let e = lookup(PASSWD, GROUP, Some("mallory")).err();
        assert!(e.is_some_and(|e| e.contains("mallory")));
        let id = lookup(PASSWD, GROUP, Some("4242")).ok();
        assert_eq!(id.map(|i| (i.uid, i.gid)), Some((4242, 4242)));
        let id = lookup(PASSWD, GROUP, Some("1000")).ok();
        assert_eq!(id.map(|i| i.name), Some("alice".into()));
        // No passwd at all: root still works.
        assert_eq!(lookup("", "", None).map(|i| i.uid), Ok(0));
    }

    #[test]
    fn shell_choice_follows_links_inside_the_root() -> std::io::Result<()> {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let d = tempfile::tempdir()?;
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/bin"))?;
        assert_eq!(shell(r), "/bin/sh");
        // Merged /usr: /bin -> usr/bin, bash is in /usr/bin.
        symlink("usr/bin", r.join("bin"))?;
        let bash = r.join("usr/bin/bash");
        std::fs::write(&bash, "#!")?;
        std::fs::set_permissions(&bash, std::fs::Permissions::from_mode(0o644))?;
        assert_eq!(shell(r), "/bin/sh", "not executable");
        std::fs::set_permissions(&bash, std::fs::Permissions::from_mode(0o755))?;
        assert_eq!(shell(r), "/bin/bash");
        Ok(())
    }

    #[test]
    fn absolute_links_stay_inside_the_root() -> std::io::Result<()> {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir()?;
        let r = d.path();
        std::fs::create_dir_all(r.join("real"))?;
        symlink("/real", r.join("abs"))?;
        symlink("../../../real", r.join("up"))?;
        assert_eq!(resolve_in_root(r, "/abs/x"), None);
        std::fs::write(r.join("real/x"), "")?;
        assert_eq!(resolve_in_root(r, "/abs/x"), Some(r.join("real/x")));
        assert_eq!(resolve_in_root(r, "/up/x"), Some(r.join("real/x")));
        symlink("loop", r.join("loop"))?;
        assert_eq!(resolve_in_root(r, "/loop"), None);
        Ok(())
    }
}
