//! Readers for the Haskell-literal values of `b9.conf` (`Nothing`, `Just 2`,
//! `Just (InB9UserDir "repo-cache")`, `[CAP_MKNOD]`, `RamSize 1 GB`, ...),
//! built on the `.b9` term parser, plus the plain values of the sections this
//! b9 adds.
//!
//! Every reader takes the value text and returns the value or a [`LitError`]
//! whose span is relative to that text.

use std::fmt;

use crate::diag::did_you_mean;
use crate::diag::source::Span;
use crate::lang::print::show_string;
use crate::lang::syntax::SizeUnit;
use crate::lang::term::{parse_document, Term};

/// Why a value could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct LitError {
    /// The expected form, e.g. `a boolean (True/False, yes/no, on/off, 1/0)`.
    pub expected: String,
    /// What was found, e.g. `"maybe"` (the raw value, quoted) or `` `CAP_FOO` ``.
    pub found: String,
    /// The part of the value that is wrong, relative to the value text.
    pub span: Span,
    /// Further facts (for example the syntax error of the term parser).
    pub notes: Vec<String>,
    /// A suggestion (for example a did-you-mean).
    pub hint: Option<String>,
}

impl fmt::Display for LitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

/// The expected form of a Bool option.
pub const EXPECTED_BOOL: &str = "a boolean (True/False, yes/no, on/off, 1/0)";

/// A log level (`LogLevel` of the original).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `LogTrace`: everything.
    Trace,
    /// `LogDebug`.
    Debug,
    /// `LogInfo`.
    Info,
    /// `LogError`: only errors.
    Error,
    /// `LogNothing`: nothing at all.
    Off,
}

impl LogLevel {
    /// All levels with their Haskell constructor names.
    pub const ALL: [(LogLevel, &'static str); 5] = [
        (LogLevel::Trace, "LogTrace"),
        (LogLevel::Debug, "LogDebug"),
        (LogLevel::Info, "LogInfo"),
        (LogLevel::Error, "LogError"),
        (LogLevel::Off, "LogNothing"),
    ];

    /// The Haskell constructor name, e.g. `LogInfo`.
    pub fn haskell_name(self) -> &'static str {
        match self {
            LogLevel::Trace => "LogTrace",
            LogLevel::Debug => "LogDebug",
            LogLevel::Info => "LogInfo",
            LogLevel::Error => "LogError",
            LogLevel::Off => "LogNothing",
        }
    }
}

/// A path relative to a well-known directory (`SystemPath` of the original).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SystemPath {
    /// `Path "p"`: the path as given.
    Path(String),
    /// `InHomeDir "p"`: below `$HOME`.
    InHomeDir(String),
    /// `InB9UserDir "p"`: below `~/.b9`.
    InB9UserDir(String),
    /// `InTempDir "p"`: below the temporary directory.
    InTempDir(String),
}

impl SystemPath {
    /// The constructor names, for messages.
    pub const CONSTRUCTORS: [&'static str; 4] = ["Path", "InHomeDir", "InB9UserDir", "InTempDir"];

    /// The value as a Haskell literal, e.g. `InB9UserDir "repo-cache"`.
    pub fn to_haskell(&self) -> String {
        let (con, p) = self.parts();
        format!("{con} {}", show_string(p))
    }

    fn parts(&self) -> (&'static str, &str) {
        match self {
            SystemPath::Path(p) => ("Path", p),
            SystemPath::InHomeDir(p) => ("InHomeDir", p),
            SystemPath::InB9UserDir(p) => ("InB9UserDir", p),
            SystemPath::InTempDir(p) => ("InTempDir", p),
        }
    }

    /// The path in the file system, given the home directory, `~/.b9` and
    /// the temporary directory.
    pub fn resolve_in(
        &self,
        home: &std::path::Path,
        b9_dir: &std::path::Path,
        temp: &std::path::Path,
    ) -> std::path::PathBuf {
        match self {
            SystemPath::Path(p) => p.into(),
            SystemPath::InHomeDir(p) => home.join(p),
            SystemPath::InB9UserDir(p) => b9_dir.join(p),
            SystemPath::InTempDir(p) => temp.join(p),
        }
    }

    /// The path in the file system: `$HOME` (or `/` when unset), the given
    /// `~/.b9` and [`std::env::temp_dir`].
    pub fn resolve(&self, b9_dir: &std::path::Path) -> std::path::PathBuf {
        let home = std::env::var_os("HOME").map_or_else(|| "/".into(), std::path::PathBuf::from);
        self.resolve_in(&home, b9_dir, &std::env::temp_dir())
    }
}

/// The guest memory of a container section (`RamSize` of the original); its
/// unit is the build language's `SizeUnit` (the same constructors).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RamSize {
    /// `RamSize n unit`.
    Size(i64, SizeUnit),
    /// `AutomaticRamSize`.
    Automatic,
}

/// The capability names accepted in `guest_capabilities` (docs/COMPATIBILITY.md#config-backends).
pub const CAPABILITIES: &[&str] = &[
    "CAP_MKNOD",
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
];

fn whole(text: &str) -> Span {
    Span::new(0, text.len())
}

fn found_raw(text: &str) -> String {
    format!("{text:?}")
}

fn fail(text: &str, expected: &str) -> LitError {
    LitError {
        expected: expected.to_string(),
        found: found_raw(text),
        span: whole(text),
        notes: Vec::new(),
        hint: None,
    }
}

/// Parses `text` as one Haskell-literal term.
fn term(text: &str, expected: &str) -> Result<Term, LitError> {
    if text.trim().is_empty() {
        return Err(LitError {
            found: "an empty value".into(),
            ..fail(text, expected)
        });
    }
    parse_document(text).map(|d| d.term).map_err(|errs| {
        let mut e = fail(text, expected);
        if let Some(first) = errs.first() {
            e.notes.push(format!("syntax error: {}", first.message));
            e.hint = first.hint.clone();
        }
        e
    })
}

/// A term that is not of the expected shape: the error names the term and
/// points at it.
fn mismatch(text: &str, t: &Term, expected: &str) -> LitError {
    let found = if t.span == whole(text) || t.span.end > text.len() {
        found_raw(text)
    } else {
        t.describe()
    };
    LitError {
        expected: expected.to_string(),
        found,
        span: t.span,
        notes: Vec::new(),
        hint: None,
    }
}

/// `Nothing` or `Just <x>`, with `inner` reading `x`.
fn maybe<T>(
    text: &str,
    expected: &str,
    inner: impl Fn(&Term) -> Option<T>,
) -> Result<Option<T>, LitError> {
    let t = term(text, expected)?;
    match t.as_con() {
        Some(("Nothing", [])) => Ok(None),
        Some(("Just", [x])) => inner(x)
            .map(Some)
            .ok_or_else(|| mismatch(text, x, expected)),
        _ => {
            let mut e = mismatch(text, &t, expected);
            // A value written without its `Just`: suggest it wrapped.
            if inner(&t).is_some() {
                let written = text.trim();
                let applied = t.as_con().is_some_and(|(_, args)| !args.is_empty());
                let wrapped = if applied && !written.starts_with('(') {
                    format!("Just ({written})")
                } else {
                    format!("Just {written}")
                };
                e.hint = Some(format!("did you mean `{wrapped}`?"));
            }
            Err(e)
        }
    }
}

/// A Bool option: `true/false/yes/no/on/off/1/0/enabled/disabled`, any case
/// (as `ConfigFile` reads Bool; not through `Read`).
pub fn read_bool(text: &str) -> Result<bool, LitError> {
    match text.trim().to_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "enabled" => Ok(true),
        "false" | "no" | "off" | "0" | "disabled" => Ok(false),
        _ => Err(fail(text, EXPECTED_BOOL)),
    }
}

/// The written form of a Bool, as the original writes it (`True`/`False`).
pub fn show_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// An `Int`, e.g. `3600` or `-1`.
pub fn read_int(text: &str) -> Result<i64, LitError> {
    let expected = "an integer, e.g. 3600";
    let t = term(text, expected)?;
    t.as_i64().ok_or_else(|| mismatch(text, &t, expected))
}

/// A non-negative integer (up to `u64::MAX`).
pub fn read_non_negative(text: &str) -> Result<u64, LitError> {
    let expected = "a non-negative integer, e.g. 3600";
    let t = term(text, expected)?;
    match t.as_integer() {
        Some(n) => u64::try_from(n).map_err(|_| fail(text, expected)),
        None => Err(mismatch(text, &t, expected)),
    }
}

/// `Maybe FilePath` / `Maybe String`: `Nothing` or `Just "text"`.
pub fn read_maybe_string(text: &str, what: &str) -> Result<Option<String>, LitError> {
    maybe(text, &format!("Nothing or Just \"<{what}>\""), |t| {
        t.as_str().map(str::to_string)
    })
}

/// `Maybe Int`: `Nothing` or `Just 2`.
pub fn read_maybe_int(text: &str) -> Result<Option<i64>, LitError> {
    maybe(text, "Nothing or Just <integer>, e.g. Just 2", Term::as_i64)
}

/// `Maybe LogLevel`: `Nothing` or `Just LogInfo` (and the other levels).
pub fn read_maybe_log_level(text: &str) -> Result<Option<LogLevel>, LitError> {
    let expected = "Nothing or Just <level> (LogTrace, LogDebug, LogInfo, LogError, LogNothing)";
    let level = |t: &Term| match t.as_con() {
        Some((name, [])) => LogLevel::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(l, _)| *l),
        _ => None,
    };
    maybe(text, expected, level).map_err(|mut e| {
        let names = LogLevel::ALL.iter().map(|(_, n)| *n);
        if let Some(guess) = inner_con_name(text, e.span)
            .filter(|_| e.hint.is_none())
            .and_then(|w| did_you_mean(&w, names))
        {
            e.hint = Some(format!("did you mean `{guess}`?"));
        }
        e
    })
}

/// `Maybe SystemPath`: `Nothing` or `Just (InB9UserDir "repo-cache")` (also
/// `Path`, `InHomeDir`, `InTempDir`).
pub fn read_maybe_system_path(text: &str) -> Result<Option<SystemPath>, LitError> {
    let expected = "Nothing or Just (<Path|InHomeDir|InB9UserDir|InTempDir> \"<path>\")";
    let sp = |t: &Term| {
        let (name, args) = t.as_con()?;
        let [arg] = args else { return None };
        let p = arg.as_str()?.to_string();
        Some(match name {
            "Path" => SystemPath::Path(p),
            "InHomeDir" => SystemPath::InHomeDir(p),
            "InB9UserDir" => SystemPath::InB9UserDir(p),
            "InTempDir" => SystemPath::InTempDir(p),
            _ => return None,
        })
    };
    maybe(text, expected, sp).map_err(|mut e| {
        if let Some(guess) = inner_con_name(text, e.span)
            .filter(|_| e.hint.is_none())
            .and_then(|w| did_you_mean(&w, SystemPath::CONSTRUCTORS))
        {
            e.hint = Some(format!("did you mean `{guess}`?"));
        }
        e
    })
}

/// The constructor name at the start of `span` in `text`, for did-you-mean.
fn inner_con_name(text: &str, span: Span) -> Option<String> {
    let s = text.get(span.start..)?;
    let s = s.trim_start_matches(['(', ' ']);
    let word: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty() && word != "Just" && word != "Nothing").then_some(word)
}

/// `[String]`, e.g. `["64bit", "^metadata_csum"]`.
pub fn read_string_list(text: &str) -> Result<Vec<String>, LitError> {
    let expected = "a list of strings, e.g. [\"64bit\", \"^metadata_csum\"]";
    let t = term(text, expected)?;
    let Some(items) = t.as_list() else {
        return Err(mismatch(text, &t, expected));
    };
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(str::to_string)
                .ok_or_else(|| mismatch(text, i, "a string"))
        })
        .collect()
}

/// A capability list, e.g. `[CAP_MKNOD,CAP_SYS_ADMIN]` (names in [`CAPABILITIES`]).
pub fn read_capabilities(text: &str) -> Result<Vec<String>, LitError> {
    let expected = "a list of capabilities, e.g. [CAP_MKNOD,CAP_SYS_ADMIN]";
    let t = term(text, expected)?;
    let Some(items) = t.as_list() else {
        return Err(mismatch(text, &t, expected));
    };
    let mut caps = Vec::new();
    for item in items {
        match item.as_con() {
            Some((name, [])) if CAPABILITIES.contains(&name) => caps.push(name.to_string()),
            Some((name, [])) => {
                let mut e = mismatch(text, item, "a capability such as CAP_SYS_ADMIN");
                e.found = format!("`{name}`");
                if let Some(g) = did_you_mean(name, CAPABILITIES.iter().copied()) {
                    e.hint = Some(format!("did you mean `{g}`?"));
                }
                return Err(e);
            }
            _ => return Err(mismatch(text, item, "a capability such as CAP_SYS_ADMIN")),
        }
    }
    Ok(caps)
}

/// `RamSize <n> KB|MB|GB` or `AutomaticRamSize`.
pub fn read_ram_size(text: &str) -> Result<RamSize, LitError> {
    let expected = "RamSize <n> KB|MB|GB or AutomaticRamSize";
    let t = term(text, expected)?;
    let parsed = match t.as_con() {
        Some(("AutomaticRamSize", [])) => Some(RamSize::Automatic),
        Some(("RamSize", [n, unit])) => {
            let unit = match unit.as_con() {
                Some(("KB", [])) => Some(SizeUnit::KB),
                Some(("MB", [])) => Some(SizeUnit::MB),
                Some(("GB", [])) => Some(SizeUnit::GB),
                _ => None,
            };
            n.as_i64().zip(unit).map(|(n, u)| RamSize::Size(n, u))
        }
        _ => None,
    };
    parsed.ok_or_else(|| mismatch(text, &t, expected))
}

/// A plain value of the sections this b9 adds: the raw text, or a quoted
/// Haskell string `"..."` (read with its escapes).
pub fn read_plain(text: &str) -> Result<String, LitError> {
    if !text.starts_with('"') {
        return Ok(text.to_string());
    }
    let expected = "a plain value or a quoted string";
    let t = term(text, expected)?;
    t.as_str()
        .map(str::to_string)
        .ok_or_else(|| mismatch(text, &t, expected))
}

/// One of `choices` (compared case-insensitively), as a plain value.
pub fn read_choice<'c>(text: &str, choices: &[&'c str]) -> Result<&'c str, LitError> {
    let value = read_plain(text)?;
    let lower = value.to_lowercase();
    choices
        .iter()
        .copied()
        .find(|c| *c == lower)
        .ok_or_else(|| {
            let mut e = fail(text, &format!("one of {}", choices.join(", ")));
            if let Some(g) = did_you_mean(&value, choices.iter().copied()) {
                e.hint = Some(format!("did you mean `{g}`?"));
            }
            e
        })
}

/// `Nothing` or `Just "text"` as the original writes it.
pub fn show_maybe_string(v: Option<&str>) -> String {
    match v {
        None => "Nothing".into(),
        Some(s) => format!("Just {}", show_string(s)),
    }
}

/// A list of strings as Haskell's `show` writes it: `["a","b"]`.
pub fn show_string_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| show_string(s)).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bools() {
        for t in ["true", "True", "YES", "on", "1", "Enabled"] {
            assert_eq!(read_bool(t), Ok(true), "{t}");
        }
        for t in ["false", "FALSE", "no", "Off", "0", "disabled"] {
            assert_eq!(read_bool(t), Ok(false), "{t}");
        }
        let e = read_bool("maybe").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected a boolean (True/False, yes/no, on/off, 1/0), found \"maybe\""
        );
        assert_eq!(e.span, Span::new(0, 5));
    }

    #[test]
    fn ints() {
        assert_eq!(read_int("3600"), Ok(3600));
        assert_eq!(read_int("-1"), Ok(-1));
        assert_eq!(read_int("(7)"), Ok(7));
        assert!(read_int("Just 3").is_err());
        assert!(read_int("")
            .unwrap_err()
            .to_string()
            .contains("found an empty value"));
        assert_eq!(read_non_negative("5"), Ok(5));
        assert!(read_non_negative("-5").is_err());
    }

    #[test]
    fn maybe_strings() {
        assert_eq!(read_maybe_string("Nothing", "path"), Ok(None));
        assert_eq!(
            read_maybe_string("Just \"/home/sven/tmp\"", "path"),
            Ok(Some("/home/sven/tmp".into()))
        );
        assert_eq!(
            read_maybe_string("Just (\"a\\\"b\")", "path"),
            Ok(Some("a\"b".into()))
        );
        let e = read_maybe_string("tilia", "text").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected Nothing or Just \"<text>\", found \"tilia\""
        );
        assert!(!e.notes.is_empty());
        let e = read_maybe_string("Just 3", "path").unwrap_err();
        assert_eq!(e.found, "an integer");
        assert_eq!(e.span, Span::new(5, 6));
    }

    #[test]
    fn maybe_ints() {
        assert_eq!(read_maybe_int("Just 2"), Ok(Some(2)));
        assert_eq!(read_maybe_int("Nothing"), Ok(None));
        assert!(read_maybe_int("2").is_err());
    }

    #[test]
    fn log_levels() {
        for (level, name) in LogLevel::ALL {
            assert_eq!(
                read_maybe_log_level(&format!("Just {name}")),
                Ok(Some(level))
            );
            assert_eq!(level.haskell_name(), name);
        }
        assert_eq!(read_maybe_log_level("Nothing"), Ok(None));
        let e = read_maybe_log_level("Just LogInfos").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `LogInfo`?"));
    }

    #[test]
    fn system_paths() {
        assert_eq!(
            read_maybe_system_path("Just (InB9UserDir \"repo-cache\")"),
            Ok(Some(SystemPath::InB9UserDir("repo-cache".into())))
        );
        assert_eq!(
            read_maybe_system_path("Just (Path \"/x\")"),
            Ok(Some(SystemPath::Path("/x".into())))
        );
        assert_eq!(
            read_maybe_system_path("Just (InHomeDir \"c\")"),
            Ok(Some(SystemPath::InHomeDir("c".into())))
        );
        assert_eq!(
            read_maybe_system_path("Just (InTempDir \"t\")"),
            Ok(Some(SystemPath::InTempDir("t".into())))
        );
        assert_eq!(read_maybe_system_path("Nothing"), Ok(None));
        let e = read_maybe_system_path("Just (InB9UsrDir \"x\")").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `InB9UserDir`?"));
        // Written without `Just`: the value wrapped, not its own name.
        let e = read_maybe_system_path("InB9UserDir \"x\"").unwrap_err();
        assert_eq!(
            e.hint.as_deref(),
            Some("did you mean `Just (InB9UserDir \"x\")`?")
        );
        let e = read_maybe_system_path("(Path \"/x\")").unwrap_err();
        assert_eq!(
            e.hint.as_deref(),
            Some("did you mean `Just (Path \"/x\")`?")
        );
        let e = read_maybe_system_path("InB9UsrDir \"x\"").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `InB9UserDir`?"));
        assert_eq!(
            read_maybe_int("2").unwrap_err().hint.as_deref(),
            Some("did you mean `Just 2`?")
        );
        assert_eq!(
            read_maybe_log_level("LogInfo").unwrap_err().hint.as_deref(),
            Some("did you mean `Just LogInfo`?")
        );
        assert_eq!(
            read_maybe_string("\"/tmp\"", "path")
                .unwrap_err()
                .hint
                .as_deref(),
            Some("did you mean `Just \"/tmp\"`?")
        );
        let sp = SystemPath::InB9UserDir("repo-cache".into());
        assert_eq!(sp.to_haskell(), "InB9UserDir \"repo-cache\"");
        assert_eq!(
            sp.resolve_in("/h".as_ref(), "/h/.b9".as_ref(), "/tmp".as_ref()),
            std::path::PathBuf::from("/h/.b9/repo-cache")
        );
    }

    #[test]
    fn string_lists() {
        assert_eq!(read_string_list("[]"), Ok(vec![]));
        assert_eq!(
            read_string_list("[\"64bit\", \"^metadata_csum\"]"),
            Ok(vec!["64bit".into(), "^metadata_csum".into()])
        );
        let e = read_string_list("[\"a\", B]").unwrap_err();
        assert_eq!(e.expected, "a string");
        assert_eq!(e.span, Span::new(6, 7));
        assert_eq!(show_string_list(&["^64bit".into()]), "[\"^64bit\"]");
    }

    #[test]
    fn capabilities() {
        assert_eq!(
            read_capabilities("[CAP_MKNOD,CAP_SYS_ADMIN]"),
            Ok(vec!["CAP_MKNOD".into(), "CAP_SYS_ADMIN".into()])
        );
        let e = read_capabilities("[CAP_MKNOD, CAP_SYS_ADMN]").unwrap_err();
        assert_eq!(e.found, "`CAP_SYS_ADMN`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `CAP_SYS_ADMIN`?"));
        assert_eq!(e.span, Span::new(12, 24));
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(
            read_ram_size("RamSize 1 GB"),
            Ok(RamSize::Size(1, SizeUnit::GB))
        );
        assert_eq!(
            read_ram_size("RamSize 512 MB"),
            Ok(RamSize::Size(512, SizeUnit::MB))
        );
        assert_eq!(
            read_ram_size("RamSize 64 KB"),
            Ok(RamSize::Size(64, SizeUnit::KB))
        );
        assert_eq!(read_ram_size("AutomaticRamSize"), Ok(RamSize::Automatic));
        assert!(read_ram_size("RamSize 1 TB").is_err());
    }

    #[test]
    fn plain_values_and_choices() {
        assert_eq!(read_plain("qemu:///system"), Ok("qemu:///system".into()));
        assert_eq!(read_plain("\"a b\""), Ok("a b".into()));
        assert!(read_plain("\"unterminated").is_err());
        assert_eq!(read_choice("KVM", &["kvm", "tcg", "auto"]), Ok("kvm"));
        assert_eq!(read_choice("\"tcg\"", &["kvm", "tcg", "auto"]), Ok("tcg"));
        let e = read_choice("kmv", &["kvm", "tcg", "auto"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected one of kvm, tcg, auto, found \"kmv\""
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `kvm`?"));
    }
}
