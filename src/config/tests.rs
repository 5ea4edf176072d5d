//! Tests of reading, writing and probing the configuration.

#![allow(clippy::unwrap_used)]

use super::model::{CloudInitConfig, LibvirtConfig};
use super::probe::{VmPaths, OSRELEASE_PATH};
use super::read::load_sources;
use super::*;
use crate::diag::source::Source;
use crate::diag::Diagnostic;
use proptest::prelude::*;
use std::path::Path;
use std::path::PathBuf;

const MINIMAL: &str = "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Just (InB9UserDir \"repo-cache\")\nunique_build_dirs: True\nverbosity: Just LogInfo\n";

fn load_ok(text: &str) -> Loaded {
    match parse_str("b9.conf", text) {
        Ok(l) => l,
        Err(e) => panic!("{}", e.iter().map(|d| d.to_string()).collect::<String>()),
    }
}

fn load_err(text: &str) -> Vec<Diagnostic> {
    match parse_str("b9.conf", text) {
        Ok(l) => panic!("expected errors, got {:?}", l.config),
        Err(e) => e,
    }
}

fn line_of(d: &Diagnostic) -> usize {
    d.location.as_ref().map_or(0, |l| l.line_col().line)
}

/// Each error's line and message.
fn located(errs: &[Diagnostic]) -> Vec<(usize, &str)> {
    errs.iter()
        .map(|d| (line_of(d), d.message.as_str()))
        .collect()
}

#[test]
fn default_file_loads_as_the_default_config() {
    let text = render_default();
    let loaded = load_ok(&text);
    assert_eq!(loaded.config, B9Config::default());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        text,
        "[global]\n\
         build_dir_root: Nothing\n\
         default_timeout_seconds: 3600\n\
         ext4_attributes: [\"^64bit\"]\n\
         keep_temp_dirs: False\n\
         log_file: Nothing\n\
         max_cached_shared_images: Just 2\n\
         repository: Nothing\n\
         repository_cache: Just (InB9UserDir \"repo-cache\")\n\
         unique_build_dirs: True\n\
         verbosity: Just LogInfo\n\
         \n\
         [libvirt]\n\
         connection: qemu:///system\n\
         network:\n\
         \n\
         [vm]\n\
         accel: auto\n\
         backend: qemu\n\
         cpus: 2\n\
         kernel:\n\
         memory_mb: 1024\n\
         modules_dir:\n\
         qemu_binary:\n"
    );
}

#[test]
fn minimal_global_gives_the_missing_key_values() {
    let c = load_ok(MINIMAL).config;
    assert_eq!(c.max_cached_shared_images, None);
    assert_eq!(c.default_timeout_seconds, None);
    assert_eq!(c.timeout_factor, None);
    assert_eq!(c.ext4_attributes, ["^64bit"]);
    assert_eq!(c.vm, VmConfig::default());
    assert_eq!(c.libvirt, LibvirtConfig::default());
    let c = load_ok(&format!(
        "{MINIMAL}ext4_attributes: []\ntimeout_factor: 3\n"
    ))
    .config;
    assert!(c.ext4_attributes.is_empty());
    assert_eq!(c.timeout_factor, Some(3));
}

#[test]
fn trusted_image_dirs_are_read_and_written_back() {
    assert!(load_ok(MINIMAL).config.trusted_image_dirs.is_empty());
    let text = format!("{MINIMAL}trusted_image_dirs: [\"/srv/images\", \"rel\"]\n");
    let c = load_ok(&text).config;
    assert_eq!(
        c.trusted_image_dirs,
        [PathBuf::from("/srv/images"), "rel".into()]
    );
    assert_eq!(load_ok(&c.to_ini()).config, c);
}

#[test]
fn cloud_init_schema_is_read_and_written_back_only_when_set() {
    assert_eq!(load_ok(MINIMAL).config.cloud_init.schema, None);
    assert!(!B9Config::default().to_ini().contains("[cloud-init]"));
    let text = format!("{MINIMAL}[cloud-init]\nschema: /opt/ci/schema v1.json\nschem: x\n");
    let loaded = load_ok(&text);
    let c = loaded.config;
    assert_eq!(
        c.cloud_init.schema.as_deref(),
        Some(std::path::Path::new("/opt/ci/schema v1.json"))
    );
    assert_eq!(load_ok(&c.to_ini()).config, c);
    let warned: Vec<String> = loaded.warnings.iter().map(|d| d.message.clone()).collect();
    assert_eq!(warned, ["unknown key `schem` in [cloud-init], ignored"]);
}

const README: &str = "[global]
build_dir_root: Just \"/home/sven/tmp\"
environment_vars: []
exec_env: LibVirtLXC
keep_temp_dirs: False
log_file: Nothing
profile_file: Nothing
unique_build_dirs: True
verbosity: Just LogDebug
repository_cache: Just (InB9UserDir \"repo-cache\")
repository: Nothing
max_cached_shared_images: Just 2

[libvirt-lxc]
connection: lxc:///
emulator_path: /usr/lib/libvirt/libvirt_lxc
network: Nothing
use_sudo: True
guest_capabilities: [CAP_MKNOD,CAP_SYS_ADMIN]
guest_ram_size: RamSize 1 GB

[systemdNspawn]
console: read-only
";

#[test]
fn readme_example_loads_with_warnings() {
    let l = load_ok(README);
    let c = &l.config;
    assert_eq!(c.build_dir_root, Some(PathBuf::from("/home/sven/tmp")));
    assert_eq!(c.verbosity, Some(LogLevel::Debug));
    assert_eq!(c.unused_sections, ["libvirt-lxc", "systemdNspawn"]);
    let msgs: Vec<&str> = l.warnings.iter().map(|d| d.message.as_str()).collect();
    for key in ["environment_vars", "exec_env", "profile_file"] {
        assert!(
            msgs.contains(&format!("unknown key `{key}` in [global], ignored").as_str()),
            "{msgs:?}"
        );
    }
    assert!(l.warnings.iter().all(|d| !d.is_error()));
    let lxc = l
        .warnings
        .iter()
        .find(|d| d.message.contains("[libvirt-lxc]"))
        .unwrap();
    assert_eq!(line_of(lxc), 14);
    // emulator_path is not a `Maybe FilePath` literal: noted, not an error.
    assert_eq!(lxc.notes.len(), 2, "{:?}", lxc.notes);
    assert!(lxc.notes[1].starts_with("line 16: "), "{:?}", lxc.notes);
    let nspawn = l
        .warnings
        .iter()
        .find(|d| d.message.contains("[systemdNspawn]"))
        .unwrap();
    assert_eq!(nspawn.notes.len(), 1, "console: read-only is valid");
}

#[test]
fn unused_sections_take_any_keys() {
    let l = load_ok(&format!(
        "{MINIMAL}[docker]\nnetwork: whatever\nbanana: 1\n[podman]\nguest_capabilities: [CAP_NOPE]\n"
    ));
    assert_eq!(l.config.unused_sections, ["docker", "podman"]);
    assert_eq!(l.warnings.len(), 2);
    assert!(l.warnings[1].notes.iter().any(|n| n.contains("CAP_NOPE")));
}

#[test]
fn bad_bool_names_file_line_key_and_form() {
    let text = "# my config\n[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: maybe\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\nunique_build_dirs: True\nverbosity: Nothing\n";
    let errs = load_err(text);
    assert_eq!(errs.len(), 1);
    let d = &errs[0];
    assert_eq!(
        d.message,
        "key `keep_temp_dirs` in [global]: expected a boolean (True/False, yes/no, on/off, 1/0), found \"maybe\""
    );
    assert_eq!(d.position().as_deref(), Some("b9.conf:4:17"));
    let shown = d.to_string();
    assert!(shown.contains("--> b9.conf:4:17"), "{shown}");
    assert!(shown.contains("4 | keep_temp_dirs: maybe"), "{shown}");
    assert!(shown.contains("|                 ^^^^^"), "{shown}");
}

#[test]
fn every_error_is_reported() {
    let text = "[global]\nbuild_dir_root: \"/x\"\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: tilia\nrepository_cache: Just (InB9UsrDir \"c\")\nverbosity: Just LogInfo\n[vm]\nmemory_mb: lots\naccel: kmv\n";
    let errs = load_err(text);
    let got = located(&errs);
    assert_eq!(got.len(), 6, "{got:#?}");
    assert_eq!(got[0].0, 2);
    assert!(got[0]
        .1
        .starts_with("key `build_dir_root` in [global]: expected Nothing or Just \"<path>\""));
    assert_eq!(got[1], (5, "key `repository` in [global]: expected Nothing or Just \"<repository id>\", found \"tilia\""));
    assert_eq!(got[2].0, 6);
    assert_eq!(errs[2].hints, ["did you mean `InB9UserDir`?"]);
    assert_eq!(
        got[3],
        (1, "required key `unique_build_dirs` missing in [global]")
    );
    assert_eq!(
        errs[3].hints,
        ["add `unique_build_dirs: True` (the default)"]
    );
    assert_eq!(got[4].0, 10);
    assert_eq!(
        got[4].1,
        "key `accel` in [vm]: expected one of auto, kvm, tcg, found \"kmv\""
    );
    assert_eq!(
        got[5],
        (
            9,
            "key `memory_mb` in [vm]: expected a positive integer, found \"lots\""
        )
    );
}

#[test]
fn value_errors_point_into_the_value() {
    let text = format!("{MINIMAL}ext4_attributes: [\"64bit\",\n    Oops]\n");
    let l = load_ok(&text);
    // ext4_attributes is lenient: a warning at the bad element, line 10.
    assert_eq!(l.config.ext4_attributes, ["^64bit"]);
    let w = &l.warnings[0];
    assert_eq!(w.position().as_deref(), Some("b9.conf:10:5"));
    assert!(
        w.message.contains("expected a string, found `Oops`"),
        "{}",
        w.message
    );
}

#[test]
fn missing_global_section_is_an_error_naming_the_file() {
    let errs = load_err("[vm]\ncpus: 4\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.starts_with("b9.conf: no [global] section"),
        "{}",
        errs[0].message
    );
    // [DEFAULT] keys alone do not make a [global] section.
    let errs = load_err(&MINIMAL.replace("[global]", "[DEFAULT]"));
    assert!(errs[0].message.contains("no [global] section"));
}

#[test]
fn missing_required_keys_point_at_the_header() {
    let errs = load_err("\n[global]\nkeep_temp_dirs: yes\n");
    let keys: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(errs.iter().all(|d| line_of(d) == 2));
    assert!(keys.contains(&"required key `verbosity` missing in [global]"));
}

#[test]
fn ini_syntax_errors_are_reported_with_lines() {
    let errs = load_err("[global\nkeep_temp_dirs yes\n");
    assert_eq!(errs.iter().map(line_of).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn default_section_case_and_continuations() {
    let text = "[DEFAULT]\nkeep_temp_dirs: On\n[global]\nBUILD_DIR_ROOT: Just\n  \"/a/b\"\nLog_File = Nothing\nrepository: Nothing\n; comment\nrepository_cache: Nothing\nunique_build_dirs: DISABLED\nverbosity: Just LogTrace\n";
    let c = load_ok(text).config;
    assert!(c.keep_temp_dirs);
    assert_eq!(c.build_dir_root, Some(PathBuf::from("/a/b")));
    assert!(!c.unique_build_dirs);
    assert_eq!(c.repository_cache, None);
    assert_eq!(c.verbosity, Some(LogLevel::Trace));
}

#[test]
fn lenient_optional_keys_warn() {
    let l = load_ok(&format!(
        "{MINIMAL}max_cached_shared_images: 2\ndefault_timeout_seconds: -3\n"
    ));
    assert_eq!(l.config.max_cached_shared_images, None);
    assert_eq!(l.config.default_timeout_seconds, None);
    assert_eq!(l.warnings.len(), 2);
    assert_eq!(line_of(&l.warnings[0]), 9);
    assert!(l.warnings[0].message.starts_with(
        "key `max_cached_shared_images` in [global]: expected Nothing or Just <integer>"
    ));
}

#[test]
fn unknown_keys_and_sections_warn() {
    let l = load_ok(&format!(
        "{MINIMAL}verbosty: x\n[vm]\ncpu: 4\n[globl]\n[stuff]\n"
    ));
    let msgs: Vec<(&str, Vec<String>)> = l
        .warnings
        .iter()
        .map(|d| (d.message.as_str(), d.hints.clone()))
        .collect();
    assert_eq!(msgs[0].0, "unknown key `verbosty` in [global], ignored");
    assert_eq!(msgs[0].1, ["did you mean `verbosity`?"]);
    assert_eq!(msgs[1].0, "unknown key `cpu` in [vm], ignored");
    assert_eq!(msgs[1].1, ["did you mean `cpus`?"]);
    assert_eq!(msgs[2].0, "unknown section [globl], ignored");
    assert_eq!(msgs[2].1, ["did you mean [global]?"]);
    assert_eq!(msgs[3].0, "unknown section [stuff], ignored");
    assert_eq!(line_of(&l.warnings[3]), 13);
}

#[test]
fn vm_and_libvirt_sections() {
    let text = format!(
        "{MINIMAL}[vm]\nbackend: Libvirt\naccel: tcg\nkernel: /boot/k\nmodules_dir: \"/lib/m x\"\nmemory_mb: 2048\ncpus: 8\nqemu_binary: /opt/qemu\nstep_cache: False\nstep_cache_max_gb: 5\n[libvirt]\nconnection: qemu:///session\nnetwork: default\n"
    );
    let c = load_ok(&text).config;
    assert_eq!(
        c.vm,
        VmConfig {
            backend: Backend::Libvirt,
            accel: Accel::Tcg,
            kernel: Some("/boot/k".into()),
            modules_dir: Some("/lib/m x".into()),
            memory_mb: 2048,
            cpus: 8,
            qemu_binary: Some("/opt/qemu".into()),
            step_cache: false,
            step_cache_max_gb: 5,
        }
    );
    assert_eq!(c.libvirt.connection, "qemu:///session");
    assert_eq!(c.libvirt.network.as_deref(), Some("default"));
    for (net, want) in [("Nothing", None), ("Just \"br0\"", Some("br0")), ("", None)] {
        let c = load_ok(&format!("{MINIMAL}[libvirt]\nnetwork: {net}\n")).config;
        assert_eq!(c.libvirt.network.as_deref(), want, "{net}");
    }
    let errs = load_err(&format!(
        "{MINIMAL}[vm]\ncpus: 0\nbackend: lxc\n[libvirt]\nconnection:\npool:\n"
    ));
    let got = located(&errs);
    assert_eq!(
        got,
        [
            (11, "key `backend` in [vm]: expected one of qemu, libvirt, found \"lxc\""),
            (10, "key `cpus` in [vm]: expected a positive integer, found \"0\""),
            (13, "key `connection` in [libvirt]: expected a libvirt connection URI, e.g. qemu:///system, found an empty value"),
            (14, "key `pool` in [libvirt]: expected the name of a storage pool on each libvirt host, e.g. b9, found an empty value"),
        ]
    );
}

#[test]
fn kernel_defaults_follow_the_release() {
    let vm = VmConfig::default();
    assert_eq!(
        vm.resolve_paths_for_release("6.1.0-13-amd64"),
        VmPaths {
            kernel: "/boot/vmlinuz-6.1.0-13-amd64".into(),
            modules_dir: "/lib/modules/6.1.0-13-amd64".into(),
        }
    );
    let vm = VmConfig {
        kernel: Some("/k".into()),
        modules_dir: Some("/m".into()),
        ..VmConfig::default()
    };
    assert_eq!(vm.resolve_paths().unwrap().kernel, PathBuf::from("/k"));
    if Path::new(OSRELEASE_PATH).exists() {
        let p = VmConfig::default().resolve_paths().unwrap();
        assert!(p.kernel.to_string_lossy().starts_with("/boot/vmlinuz-"));
    }
}

const REPOS: &str = "[zeta-repo]\nremote_path: /srv/b9\nssh_priv_key_file: /home/u/.ssh/id\nssh_remote_host: z.example.org\nssh_remote_port: 2222\nssh_remote_user: b9\n[alpha-repo]\nremote_path: /r\nssh_priv_key_file: /does/not/exist\nssh_remote_host: a\nssh_remote_port: 22\nssh_remote_user: u\n";

#[test]
fn repo_sections() {
    let c = load_ok(&format!("{MINIMAL}{REPOS}")).config;
    let ids: Vec<&str> = c.repos.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "zeta"]);
    let z = c.repo("zeta").unwrap();
    assert_eq!(z.ssh_remote_port, 2222);
    assert_eq!(z.remote_path, "/srv/b9");
    assert_eq!(z.ssh_priv_key_file, PathBuf::from("/home/u/.ssh/id"));
    let errs = load_err(&format!(
        "{MINIMAL}[x-repo]\nremote_path: /r\nssh_remote_port: twenty\n"
    ));
    let got = located(&errs);
    assert_eq!(
        got,
        [
            (9, "required key `ssh_priv_key_file` missing in [x-repo]"),
            (9, "required key `ssh_remote_host` missing in [x-repo]"),
            (9, "required key `ssh_remote_user` missing in [x-repo]"),
            (11, "key `ssh_remote_port` in [x-repo]: expected an integer, e.g. 3600, found \"twenty\""),
        ]
    );
    let errs = load_err(&format!("{MINIMAL}{}", REPOS.replace("2222", "70000")));
    assert_eq!(
        errs[0].message,
        "key `ssh_remote_port` in [zeta-repo]: expected a port number (0-65535), found \"70000\""
    );
}

#[test]
fn overrides_apply_only_when_given() {
    let text = format!("{MINIMAL}[libvirt]\nnetwork: default\n")
        .replace("keep_temp_dirs: False", "keep_temp_dirs: True")
        .replace("unique_build_dirs: True", "unique_build_dirs: False")
        .replace("verbosity: Just LogInfo", "verbosity: Just LogDebug");
    let base = load_ok(&text).config;
    let mut c = base.clone();
    c.apply(&Overrides::default());
    assert_eq!(
        c, base,
        "no flag given: nothing changes (unlike the original)"
    );
    assert!(c.keep_temp_dirs && !c.unique_build_dirs);
    assert_eq!(c.verbosity, Some(LogLevel::Debug));

    let mut c = B9Config::default();
    c.apply(&Overrides {
        verbosity: Some(LogLevel::Trace),
        log_file: Some("/l".into()),
        build_dir_root: Some("/b".into()),
        keep_temp_dirs: true,
        predictable_build_dir: true,
        repository_cache: Some("/cache".into()),
        repository: Some("r".into()),
        network: Some("br0".into()),
        accel: Some(Accel::Kvm),
        backend: Some(Backend::Libvirt),
    });
    assert_eq!(c.verbosity, Some(LogLevel::Trace));
    assert_eq!(c.log_file, Some("/l".into()));
    assert_eq!(c.build_dir_root, Some("/b".into()));
    assert!(c.keep_temp_dirs);
    assert!(!c.unique_build_dirs);
    assert_eq!(c.repository_cache, Some(SystemPath::Path("/cache".into())));
    assert_eq!(c.repository.as_deref(), Some("r"));
    assert_eq!(c.libvirt.network.as_deref(), Some("br0"));
    assert_eq!(c.vm.accel, Accel::Kvm);
    assert_eq!(c.vm.backend, Backend::Libvirt);
    c.apply(&Overrides {
        network: Some("host".into()),
        ..Overrides::default()
    });
    assert_eq!(c.libvirt.network, None);
    assert_eq!(c.repository.as_deref(), Some("r"));
}

#[test]
fn several_files_merge_in_order() {
    let a = Source::new(
        "a.conf",
        format!("{MINIMAL}max_cached_shared_images: Just 5\n"),
    );
    let b = Source::new(
        "b.conf",
        "[global]\nverbosity: Just LogError\n[vm]\ncpus: 4\n",
    );
    let l = load_sources(&[a.clone(), b]).unwrap();
    assert_eq!(l.config.verbosity, Some(LogLevel::Error));
    assert_eq!(l.config.max_cached_shared_images, Some(5));
    assert_eq!(l.config.vm.cpus, 4);
    let bad = Source::new("b.conf", "[global]\nkeep_temp_dirs: perhaps\n");
    let errs = load_sources(&[a, bad]).unwrap_err();
    assert_eq!(errs[0].position().as_deref(), Some("b.conf:2:17"));
}

#[test]
fn load_from_disk_via_locate() {
    let dir = tempfile::tempdir().unwrap();
    let b9 = dir.path().join(".b9");
    let located = locate(&[], &b9).unwrap();
    assert!(located.created);
    let l = load(&located).unwrap();
    assert_eq!(l.config, B9Config::default());
    let other = dir.path().join("more.conf");
    std::fs::write(&other, "[global]\nkeep_temp_dirs: yes\n").unwrap();
    let located = locate(&[b9.join("b9.conf"), other], &b9).unwrap();
    let l = load(&located).unwrap();
    assert!(l.config.keep_temp_dirs);
    assert_eq!(located.files.len(), 2);
}

#[test]
fn render_updated_keeps_unknown_sections_and_keys() {
    let l = load_ok(README);
    let mut c = l.config.clone();
    c.repos.push(RemoteRepo {
        id: "new".into(),
        remote_path: "/r".into(),
        ssh_priv_key_file: "/k".into(),
        ssh_remote_host: "h".into(),
        ssh_remote_port: 22,
        ssh_remote_user: "u".into(),
    });
    let text = l.render_updated(&c);
    assert!(
        text.contains("[libvirt-lxc]\nconnection: lxc:///\n"),
        "{text}"
    );
    assert!(text.contains("exec_env: LibVirtLXC\n"), "{text}");
    assert!(text.contains("[new-repo]\n"), "{text}");
    let again = load_ok(&text);
    assert_eq!(again.config.repos, c.repos);
    assert_eq!(
        again.config.unused_sections,
        ["libvirt-lxc", "systemdNspawn"]
    );
}

#[test]
fn round_trip_of_a_full_config() {
    let c = B9Config {
        build_dir_root: Some("/tmp/b 9".into()),
        keep_temp_dirs: true,
        log_file: Some("/var/log/\"b9\".log".into()),
        max_cached_shared_images: Some(-1),
        repository: Some("zeta".into()),
        repository_cache: Some(SystemPath::InTempDir("c".into())),
        unique_build_dirs: false,
        verbosity: None,
        default_timeout_seconds: None,
        timeout_factor: Some(u64::MAX),
        ext4_attributes: vec![],
        trusted_image_dirs: vec![],
        vm: VmConfig {
            backend: Backend::Libvirt,
            accel: Accel::Kvm,
            kernel: Some(" /k ".into()),
            modules_dir: Some("\"quoted\"".into()),
            memory_mb: 4096,
            cpus: 1,
            qemu_binary: None,
            step_cache: false,
            step_cache_max_gb: 3,
        },
        libvirt: LibvirtConfig {
            connection: "qemu+ssh://h/system".into(),
            network: Some("default".into()),
            hosts: vec!["qemu+ssh://b@a/system".into(), "qemu+tls://b/system".into()],
            pool: "farm".into(),
            vms_per_host: 3,
        },
        cloud_init: CloudInitConfig {
            schema: Some("/opt/schema \"v1\".json".into()),
        },
        repos: vec![RemoteRepo {
            id: "zeta".into(),
            remote_path: "/srv/b9".into(),
            ssh_priv_key_file: "/k".into(),
            ssh_remote_host: "h".into(),
            ssh_remote_port: 2222,
            ssh_remote_user: "u".into(),
        }],
        unused_sections: vec![],
    };
    let back = load_ok(&c.to_ini());
    assert_eq!(back.config, c);
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
}

fn text_value() -> impl Strategy<Value = String> {
    // Raw (unquoted) INI strings are trimmed and may not span lines.
    "[a-zA-Z0-9_./:@+-]([a-zA-Z0-9_ ./:@+\"\\\\-]{0,12}[a-zA-Z0-9_./:@+-])?"
}

fn any_text() -> impl Strategy<Value = String> {
    "[ -~\\n\\tä]{0,16}"
}

fn system_path() -> impl Strategy<Value = SystemPath> {
    (0..4u8, any_text()).prop_map(|(k, p)| match k {
        0 => SystemPath::Path(p),
        1 => SystemPath::InHomeDir(p),
        2 => SystemPath::InB9UserDir(p),
        _ => SystemPath::InTempDir(p),
    })
}

fn repo() -> impl Strategy<Value = RemoteRepo> {
    (
        "[a-z][a-z0-9_]{0,8}",
        text_value(),
        text_value(),
        text_value(),
        any::<u16>(),
        text_value(),
    )
        .prop_map(|(id, remote_path, key, host, port, user)| RemoteRepo {
            id,
            remote_path,
            ssh_priv_key_file: key.into(),
            ssh_remote_host: host,
            ssh_remote_port: port,
            ssh_remote_user: user,
        })
}

prop_compose! {
    fn config()(
        globals in (
            proptest::option::of(any_text()),
            any::<bool>(),
            proptest::option::of(any_text()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any_text()),
            proptest::option::of(system_path()),
            any::<bool>(),
            proptest::option::of(0..5usize),
        ),
        timeouts in (proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>())),
        ext4 in proptest::collection::vec(any_text(), 0..3),
        vm in (0..2u8, 0..3u8, proptest::option::of(any_text()), proptest::option::of(any_text()),
               1..u32::MAX, 1..u32::MAX, proptest::option::of(any_text())),
        libvirt in (any_text(), proptest::option::of(any_text())),
        schema in proptest::option::of(any_text()),
        repos in proptest::collection::btree_map("[a-z][a-z0-9]{0,6}", repo(), 0..3),
    ) -> B9Config {
        let (build_dir_root, keep_temp_dirs, log_file, max_cached_shared_images, repository,
             repository_cache, unique_build_dirs, verbosity) = globals;
        let non_empty = |s: String| if s.is_empty() { "x".to_string() } else { s };
        B9Config {
            build_dir_root: build_dir_root.map(PathBuf::from),
            keep_temp_dirs,
            log_file: log_file.map(PathBuf::from),
            max_cached_shared_images,
            repository,
            repository_cache,
            unique_build_dirs,
            verbosity: verbosity.map(|i| LogLevel::ALL[i].0),
            default_timeout_seconds: timeouts.0,
            timeout_factor: timeouts.1,
            ext4_attributes: ext4,
            trusted_image_dirs: vec![],
            vm: VmConfig {
                backend: if vm.0 == 0 { Backend::Qemu } else { Backend::Libvirt },
                accel: [Accel::Auto, Accel::Kvm, Accel::Tcg][usize::from(vm.1)],
                kernel: vm.2.map(non_empty).map(PathBuf::from),
                modules_dir: vm.3.map(non_empty).map(PathBuf::from),
                memory_mb: vm.4,
                cpus: vm.5,
                qemu_binary: vm.6.map(non_empty).map(PathBuf::from),
                ..VmConfig::default()
            },
            libvirt: LibvirtConfig {
                connection: non_empty(libvirt.0),
                network: libvirt.1.map(non_empty),
                ..LibvirtConfig::default()
            },
            cloud_init: CloudInitConfig { schema: schema.map(non_empty).map(PathBuf::from) },
            repos: repos.into_iter().map(|(id, r)| RemoteRepo { id, ..r }).collect(),
            unused_sections: vec![],
        }
    }
}

proptest! {
    #[test]
    fn render_then_parse_is_identity(c in config()) {
        let text = c.to_ini();
        let back = parse_str("b9.conf", &text)
            .map_err(|e| TestCaseError::fail(format!("{text}\n{e:?}")))?;
        prop_assert_eq!(&back.config, &c, "{}", text);
        prop_assert!(back.warnings.is_empty());
    }
}
