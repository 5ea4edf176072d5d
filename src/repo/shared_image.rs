//! One version of a shared image and its `.b9si` metadata file.
//!
//! The original b9 writes the metadata with `prettyPrintToFile`, i.e. the
//! `ppShow` (package `pretty-show`) rendering of its `Show` instance, without a
//! trailing newline, and reads it back with `Read`. [`SharedImage::to_b9si`]
//! reproduces that rendering byte for byte; [`SharedImage::from_b9si`] accepts
//! any layout `Read` accepts (the one-line `show` form included).

use std::path::Path;

use crate::diag::source::{Source, SourceRef};
use crate::lang;
use crate::lang::print::show_string;
use crate::lang::syntax::{FileSystem, ImageType};
use crate::lang::term::{parse_document, Term};
use crate::lang::typed::Syntax;

use super::RepoError;

/// The extension of shared image metadata files.
pub const INFO_EXTENSION: &str = "b9si";

/// A version of a shared image (the original's `SharedImage`): name, build
/// date (`%F-%T`, UTC), build id, disk image format and file system.
///
/// Versions are ordered by (name, date string, build id), see
/// [`SharedImage::order_key`].
#[derive(Clone, Debug, PartialEq)]
pub struct SharedImage {
    /// `SharedImageName`.
    pub name: String,
    /// `SharedImageDate`, e.g. `2023-04-19-14:31:45`; compared as a string.
    pub date: String,
    /// `SharedImageBuildId`.
    pub build_id: String,
    /// The format of the image file.
    pub image_type: ImageType,
    /// The file system inside the image.
    pub fs: FileSystem,
}

/// The file extension of an image format, as the original's `imageFileExtension`.
pub fn image_extension(t: &ImageType) -> &'static str {
    match t {
        ImageType::Raw => "raw",
        ImageType::QCow2 => "qcow2",
        ImageType::Vmdk => "vmdk",
    }
}

/// The ribbon width of the `pretty` library's default style
/// (line length 100, 1.5 ribbons per line): `round (100 / 1.5)`.
const RIBBON: usize = 67;

impl SharedImage {
    /// `<name>_<buildid>.<raw|qcow2|vmdk>`: the image file in a repository.
    pub fn image_file_name(&self) -> String {
        format!(
            "{}_{}.{}",
            self.name,
            self.build_id,
            image_extension(&self.image_type)
        )
    }

    /// `<name>_<buildid>.b9si`: the metadata file in a repository.
    pub fn info_file_name(&self) -> String {
        format!("{}_{}.{INFO_EXTENSION}", self.name, self.build_id)
    }

    /// The sort key: (name, date, build id). "Latest" is the maximum.
    pub fn order_key(&self) -> (&str, &str, &str) {
        (&self.name, &self.date, &self.build_id)
    }

    /// The `.b9si` text exactly as the original writes it (`ppShow`, no
    /// trailing newline), e.g.
    ///
    /// ```text
    /// SharedImage
    ///   (SharedImageName "fedora")
    ///   (SharedImageDate "2023-04-19-14:31:45")
    ///   (SharedImageBuildId "0123ABCD-89ABCDEF")
    ///   QCow2
    ///   Ext4
    /// ```
    ///
    /// The whole value never fits the 67-character ribbon on one line, so
    /// `pretty` always puts every argument on its own line, indented by 2; an
    /// argument `(Con "s")` longer than the ribbon is itself broken after
    /// the constructor, its string indented by 5.
    pub fn to_b9si(&self) -> String {
        let mut out = String::from("SharedImage");
        for (con, value) in [
            ("SharedImageName", &self.name),
            ("SharedImageDate", &self.date),
            ("SharedImageBuildId", &self.build_id),
        ] {
            let s = haskell_show_string(value);
            let one_line = format!("({con} {s})");
            if one_line.chars().count() <= RIBBON {
                out.push_str("\n  ");
                out.push_str(&one_line);
            } else {
                out.push_str(&format!("\n  ({con}\n     {s})"));
            }
        }
        out.push_str(&format!("\n  {:?}\n  {:?}", self.image_type, self.fs));
        out
    }

    /// The one-line Haskell `show` form, which the original reads as well.
    #[cfg(test)]
    pub fn to_show(&self) -> String {
        format!(
            "SharedImage (SharedImageName {}) (SharedImageDate {}) (SharedImageBuildId {}) {:?} {:?}",
            haskell_show_string(&self.name),
            haskell_show_string(&self.date),
            haskell_show_string(&self.build_id),
            self.image_type,
            self.fs
        )
    }

    /// Reads a `.b9si` text (any layout Haskell's `read` accepts); `path` is
    /// only used in error messages. Names or build ids that would escape the
    /// repository directory (empty, containing `/` or NUL, `.` or `..`) are
    /// rejected as corrupt.
    pub fn from_b9si(text: &str, path: &Path) -> Result<SharedImage, RepoError> {
        let source = Source::new(path, text);
        let corrupt = |offset: usize, message: String| {
            let lc = source.line_col(offset);
            RepoError::Corrupt {
                path: path.to_path_buf(),
                line: lc.line,
                column: lc.column,
                message,
            }
        };
        let doc = parse_document(text).map_err(|errors| match errors.first() {
            Some(e) => corrupt(e.span.start, e.message.clone()),
            None => corrupt(0, "cannot parse".into()),
        })?;
        let term = &doc.term;
        let args = match term.as_con() {
            Some(("SharedImage", args)) => args,
            _ => {
                return Err(corrupt(
                    term.span.start,
                    format!("expected `SharedImage`, found {}", term.describe()),
                ))
            }
        };
        if args.len() != 5 {
            return Err(corrupt(
                term.span.start,
                format!(
                    "`SharedImage` takes 5 arguments (name, date, build id, image type, file system), found {}",
                    args.len()
                ),
            ));
        }
        let wrapped = |t: &Term, con: &str| -> Result<String, RepoError> {
            t.as_wrapped_str(con).map(str::to_string).ok_or_else(|| {
                corrupt(
                    t.span.start,
                    format!("expected `{con} \"...\"`, found {}", t.describe()),
                )
            })
        };
        let name = wrapped(&args[0], "SharedImageName")?;
        let date = wrapped(&args[1], "SharedImageDate")?;
        let build_id = wrapped(&args[2], "SharedImageBuildId")?;
        for (t, v, what) in [(&args[0], &name, "name"), (&args[2], &build_id, "build id")] {
            if !is_safe_component(v) {
                return Err(corrupt(
                    t.span.start,
                    format!(
                        "the {what} {} cannot be part of a file name",
                        show_string(v)
                    ),
                ));
            }
        }
        // A syntax type read through the typed layer; any problem is one
        // "expected ..." naming the allowed constructors.
        fn syntax_field<T: Syntax>(
            t: &Term,
            source: &SourceRef,
            expected: &str,
        ) -> Result<T, (usize, String)> {
            lang::decode::<T>(t, source).map_err(|_| {
                (
                    t.span.start,
                    format!("expected {expected}, found {}", t.describe()),
                )
            })
        }
        let image_type =
            syntax_field::<ImageType>(&args[3], &source, "an image type (Raw, QCow2, Vmdk)")
                .map_err(|(at, m)| corrupt(at, m))?;
        let fs = syntax_field::<FileSystem>(
            &args[4],
            &source,
            "a file system (NoFileSystem, Ext4, Ext4_64, ISO9660, VFAT)",
        )
        .map_err(|(at, m)| corrupt(at, m))?;
        Ok(SharedImage {
            name,
            date,
            build_id,
            image_type,
            fs,
        })
    }
}

/// Whether `s` can be used as part of a file name inside the repository
/// directory without escaping it.
pub fn is_safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

/// A string literal exactly as Haskell's `show` writes it: like
/// [`show_string`], but non-ASCII characters as decimal escapes (`\233`,
/// followed by `\&` when a digit comes next).
pub fn haskell_show_string(s: &str) -> String {
    let shown = show_string(s);
    let mut out = String::with_capacity(shown.len());
    let mut chars = shown.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\{}", c as u32));
            if chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                out.push_str("\\&");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fedora() -> SharedImage {
        SharedImage {
            name: "fedora".into(),
            date: "2023-04-19-14:31:45".into(),
            build_id: "0123ABCD-89ABCDEF".into(),
            image_type: ImageType::QCow2,
            fs: FileSystem::Ext4,
        }
    }

    #[test]
    fn file_names() {
        let img = fedora();
        assert_eq!(img.image_file_name(), "fedora_0123ABCD-89ABCDEF.qcow2");
        assert_eq!(img.info_file_name(), "fedora_0123ABCD-89ABCDEF.b9si");
    }

    #[test]
    fn pp_show_layout() {
        assert_eq!(
            fedora().to_b9si(),
            "SharedImage\n  (SharedImageName \"fedora\")\n  (SharedImageDate \"2023-04-19-14:31:45\")\n  (SharedImageBuildId \"0123ABCD-89ABCDEF\")\n  QCow2\n  Ext4"
        );
    }

    #[test]
    fn long_names_break_after_the_constructor() {
        let mut img = fedora();
        img.name = "n".repeat(47);
        // `(SharedImageName "` + 47 + `")` = 67 characters: still fits.
        assert!(img
            .to_b9si()
            .contains(&format!("\n  (SharedImageName \"{}\")\n", img.name)));
        img.name.push('n');
        assert!(img
            .to_b9si()
            .contains(&format!("\n  (SharedImageName\n     \"{}\")\n", img.name)));
        let back = SharedImage::from_b9si(&img.to_b9si(), Path::new("x.b9si"));
        assert_eq!(back.ok(), Some(img));
    }

    #[test]
    fn both_layouts_read_back() {
        let img = fedora();
        for text in [
            img.to_b9si(),
            img.to_show(),
            format!("  ( {} )\n", img.to_show()),
        ] {
            let back = SharedImage::from_b9si(&text, Path::new("x.b9si"));
            assert_eq!(back.ok(), Some(img.clone()), "{text}");
        }
    }

    #[test]
    fn haskell_escapes() {
        assert_eq!(haskell_show_string("caf\u{e9}1"), "\"caf\\233\\&1\"");
        let mut img = fedora();
        img.name = "caf\u{e9}\"x".into();
        let back = SharedImage::from_b9si(&img.to_b9si(), Path::new("x.b9si"));
        assert_eq!(back.ok(), Some(img));
    }

    #[test]
    fn corrupt_files_name_line_and_column() {
        let text = "SharedImage\n  (SharedImageName \"a\")\n  (SharedImageDate \"d\")\n  (SharedImageBuildId \"b\")\n  QCow3\n  Ext4";
        let err = SharedImage::from_b9si(text, Path::new("/c/a_b.b9si"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/c/a_b.b9si:5:3"), "{err}");
        assert!(err.contains("QCow3"), "{err}");

        for bad in [
            "",
            "SharedImage (",
            "Foo",
            "SharedImage (SharedImageName \"a\")",
            "SharedImage (SharedImageName \"../x\") (SharedImageDate \"d\") (SharedImageBuildId \"b\") Raw Ext4",
            "SharedImage (SharedImageName \"a\") (SharedImageDate 1) (SharedImageBuildId \"b\") Raw Ext4",
        ] {
            assert!(
                matches!(
                    SharedImage::from_b9si(bad, Path::new("x.b9si")),
                    Err(RepoError::Corrupt { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
