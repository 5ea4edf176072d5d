//! The typed build language: every type and constructor of the original b9's
//! EDSL (docs/COMPATIBILITY.md#language), with the original's constructor names.
//!
//! Field types wrap every value in a [`Node`] so errors found later (during
//! evaluation and checks) can point at the text that caused them.

use crate::diag::Diagnostic;
use crate::lang::term::{Term, TermKind};
use crate::lang::typed::{syntax_enum, ConstructorSpec, Cx, Node, Syntax};

/// A file path as written in a build file.
pub type FilePath = Node<String>;
/// A list of spanned values.
pub type List<T> = Node<Vec<Node<T>>>;

syntax_enum! {
    /// The root of a build file: a generator of artifact instances (docs/COMPATIBILITY.md#generators).
    pub enum ArtifactGenerator = "ArtifactGenerator".into();
    {
        /// Adds sources for every artifact in the body.
        Sources(sources: List<ArtifactSource>, body: List<ArtifactGenerator>),
        /// Binds variables for the body.
        Let(bindings: List<(Node<String>, Node<String>)>, body: List<ArtifactGenerator>),
        /// The body once per combination of values (cartesian product).
        LetX(bindings: List<(Node<String>, List<String>)>, body: List<ArtifactGenerator>),
        /// The body once per index of equally long value lists (zip).
        Each(bindings: List<(Node<String>, List<String>)>, body: List<ArtifactGenerator>),
        /// The body once per row of values.
        EachT(names: List<String>, rows: List<Vec<Node<String>>>, body: List<ArtifactGenerator>),
        /// One artifact instance.
        Artifact(id: Node<InstanceId>, assembly: Node<ArtifactAssembly>),
        /// Nothing.
        EmptyArtifact,
    }
}

syntax_enum! {
    /// The name of an artifact instance (docs/COMPATIBILITY.md#generators).
    pub enum InstanceId = "InstanceId".into();
    {
        /// The id text (interpolated).
        IID(id: Node<String>),
    }
}

syntax_enum! {
    /// What an artifact produces (docs/COMPATIBILITY.md#generators).
    pub enum ArtifactAssembly = "ArtifactAssembly".into();
    {
        /// Cloud-init media from the generated files.
        CloudInit(types: List<CloudInitType>, path: FilePath),
        /// Disk images, with a script run in a VM.
        VmImages(targets: List<ImageTarget>, script: Node<VmScript>),
        /// As `VmImages`, plus a host-side script on the build images.
        VmImagesWithFixup(targets: List<ImageTarget>, script: Node<VmScript>, fixup: Node<Script>),
    }
}

syntax_enum! {
    /// A cloud-init output kind (docs/COMPATIBILITY.md#cloud-init).
    pub enum CloudInitType = "CloudInitType".into();
    {
        /// `<base>.iso`
        CI_ISO,
        /// `<base>.vfat`
        CI_VFAT,
        /// the directory `<base>`
        CI_DIR,
    }
}

syntax_enum! {
    /// A file generated into the instance directory (docs/COMPATIBILITY.md#sources).
    pub enum ArtifactSource = "ArtifactSource".into();
    {
        /// Copies a file.
        FromFile(path: FilePath, source: Node<SourceFile>),
        /// Writes generated content.
        FromContent(path: FilePath, content: Node<Content>),
        /// Sets the mode of the nested files.
        SetPermissions(owner: Node<i64>, group: Node<i64>, other: Node<i64>, sources: List<ArtifactSource>),
        /// Prefixes the source paths of nested `FromFile`s.
        FromDirectory(dir: FilePath, sources: List<ArtifactSource>),
        /// Prefixes the output paths of nested sources.
        IntoDirectory(dir: FilePath, sources: List<ArtifactSource>),
    }
}

syntax_enum! {
    /// A host file to read, with or without variable expansion.
    pub enum SourceFile = "SourceFile".into();
    {
        /// A source file.
        Source(conversion: Node<SourceFileConversion>, path: FilePath),
    }
}

syntax_enum! {
    /// Whether a source file's contents are template-expanded.
    pub enum SourceFileConversion = "SourceFileConversion".into();
    {
        /// Verbatim.
        NoConversion,
        /// `${var}` replaced.
        ExpandVariables,
    }
}

syntax_enum! {
    /// Generated file contents (docs/COMPATIBILITY.md#ast).
    pub enum Content = "Content".into();
    {
        /// An Erlang term (sys.config).
        RenderErlang(ast: Node<Ast<ErlangPropList>>),
        /// Plain YAML.
        RenderYamlObject(ast: Node<Ast<YamlObject>>),
        /// YAML with a `#cloud-config` header.
        RenderCloudConfig(ast: Node<Ast<CloudConfigYaml>>),
        /// Bytes written as a string literal.
        FromByteString(bytes: Node<String>),
        /// Literal text (not interpolated).
        FromString(text: Node<String>),
        /// A text file's contents.
        FromTextFile(source: Node<SourceFile>),
        /// Base64 of a file's bytes.
        RenderBase64BinaryFile(path: FilePath),
        /// Base64 of literal bytes.
        RenderBase64Binary(bytes: Node<String>),
        /// A download.
        FromURL(url: Node<String>),
    }
}

syntax_enum! {
    /// Structured content for YAML or Erlang (docs/COMPATIBILITY.md#ast).
    pub enum Ast<A> = format!("AST Content {}", A::type_name());
    {
        /// A mapping / proplist.
        ASTObj(entries: List<(Node<String>, Node<Ast<A>>)>),
        /// A sequence / list.
        ASTArr(items: List<Ast<A>>),
        /// A merge of all elements, left to right.
        ASTMerge(items: List<Ast<A>>),
        /// Rendered content as a string.
        ASTEmbed(content: Node<Box<Content>>),
        /// A string.
        ASTString(text: Node<String>),
        /// A number.
        ASTInt(number: Node<i64>),
        /// A file parsed as YAML or Erlang.
        ASTParse(source: Node<SourceFile>),
        /// A literal.
        AST(literal: Node<A>),
    }
}

syntax_enum! {
    /// A YAML literal: the string is a YAML document.
    pub enum YamlObject = "YamlObject".into();
    {
        /// The YAML text.
        YamlObject(yaml: Node<String>),
    }
}

/// A cloud-config literal, written in record syntax:
/// `MkCloudConfigYaml {fromCloudConfigYaml = YamlObject "..."}`.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudConfigYaml {
    /// The YAML document.
    pub yaml: Node<YamlObject>,
}

const CLOUD_CONFIG_CON: &str = "MkCloudConfigYaml";
const CLOUD_CONFIG_FIELD: &str = "fromCloudConfigYaml";

impl Syntax for CloudConfigYaml {
    fn type_name() -> String {
        "CloudConfigYaml".into()
    }

    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        let form = format!("{CLOUD_CONFIG_CON} {{{CLOUD_CONFIG_FIELD} = YamlObject \"...\"}}");
        match &term.kind {
            TermKind::Record { name, fields, .. } if name == CLOUD_CONFIG_CON => match fields
                .as_slice()
            {
                [(field, _, value)] if field == CLOUD_CONFIG_FIELD => {
                    Node::<YamlObject>::from_term(value, cx).map(|yaml| CloudConfigYaml { yaml })
                }
                _ => {
                    let d = Diagnostic::error(format!(
                        "`{CLOUD_CONFIG_CON}` has exactly one field, `{CLOUD_CONFIG_FIELD}`"
                    ))
                    .with_note(format!("write it as `{form}`"));
                    cx.error(term.span, d);
                    None
                }
            },
            _ => {
                let mut d = Diagnostic::error(format!(
                    "expected `CloudConfigYaml`, found {}",
                    term.describe()
                ))
                .with_label("expected `CloudConfigYaml` here")
                .with_note(format!("a cloud-config literal is written `{form}`"));
                if matches!(&term.kind, TermKind::Con { name, .. } if name == CLOUD_CONFIG_CON) {
                    d = d.with_hint("`MkCloudConfigYaml` needs record syntax with braces");
                }
                cx.error(term.span, d);
                None
            }
        }
    }

    fn to_term(&self) -> Term {
        Term::bare(TermKind::Record {
            name: CLOUD_CONFIG_CON.into(),
            name_span: Default::default(),
            fields: vec![(
                CLOUD_CONFIG_FIELD.into(),
                Default::default(),
                self.yaml.to_term(),
            )],
            closing: Vec::new(),
        })
    }

    #[cfg(test)]
    fn sample(g: &mut crate::lang::typed::testgen::Gen, depth: u32) -> Self {
        CloudConfigYaml {
            yaml: Node::sample(g, depth + 1),
        }
    }
}

/// Constructors of the record types, for "which type is this" lookups.
const CLOUD_CONFIG_SPECS: &[ConstructorSpec] = &[ConstructorSpec {
    name: CLOUD_CONFIG_CON,
    fields: &[],
}];

syntax_enum! {
    /// An Erlang literal for `RenderErlang`.
    pub enum ErlangPropList = "ErlangPropList".into();
    {
        /// The term.
        ErlangPropList(term: Node<SimpleErlangTerm>),
    }
}

syntax_enum! {
    /// An Erlang term literal.
    pub enum SimpleErlangTerm = "SimpleErlangTerm".into();
    {
        /// `"text"`
        ErlString(text: Node<String>),
        /// `1.5`
        ErlFloat(value: Node<f64>),
        /// `42`
        ErlNatural(value: Node<i128>),
        /// `atom`
        ErlAtom(name: Node<String>),
        /// `$c`
        ErlChar(ch: Node<char>),
        /// `<<"bytes">>`
        ErlBinary(bytes: Node<String>),
        /// `[a, b]`
        ErlList(items: List<SimpleErlangTerm>),
        /// `{a, b}`
        ErlTuple(items: List<SimpleErlangTerm>),
    }
}

syntax_enum! {
    /// One disk image of a `VmImages` build (docs/COMPATIBILITY.md#image-types).
    pub enum ImageTarget = "ImageTarget".into();
    {
        /// Destination, source, mount point.
        ImageTarget(destination: Node<ImageDestination>, source: Node<ImageSource>, mount: Node<MountPoint>),
    }
}

syntax_enum! {
    /// Where an image is mounted while the script runs.
    pub enum MountPoint = "MountPoint".into();
    {
        /// An absolute path in the guest.
        MountPoint(path: FilePath),
        /// Not mounted.
        NotMounted,
    }
}

syntax_enum! {
    /// Where a built image goes.
    pub enum ImageDestination = "ImageDestination".into();
    {
        /// Into the shared-image repository.
        Share(name: Node<String>, image_type: Node<ImageType>, resize: Node<ImageResize>),
        /// The live-installer layout (deprecated).
        LiveInstallerImage(name: Node<String>, root: FilePath, resize: Node<ImageResize>),
        /// A file.
        LocalFile(image: Node<Image>, resize: Node<ImageResize>),
        /// Nowhere.
        Transient,
    }
}

syntax_enum! {
    /// How a build image is created.
    pub enum ImageSource = "ImageSource".into();
    {
        /// A new image with a file system.
        EmptyImage(label: Node<String>, fs: Node<FileSystem>, image_type: Node<ImageType>, size: Node<ImageSize>),
        /// An overlay on an existing image.
        CopyOnWrite(image: Node<Image>),
        /// A copy of an existing image (or one of its partitions).
        SourceImage(image: Node<Image>, partition: Node<Partition>, resize: Node<ImageResize>),
        /// The newest cached shared image of that name.
        From(name: Node<String>, resize: Node<ImageResize>),
    }
}

syntax_enum! {
    /// Which partition of a source image to use.
    pub enum Partition = "Partition".into();
    {
        /// The whole image.
        NoPT,
        /// Partition n (1-based).
        Partition(number: Node<i64>),
    }
}

syntax_enum! {
    /// A disk image file.
    pub enum Image = "Image".into();
    {
        /// Path, format, file system.
        Image(path: FilePath, image_type: Node<ImageType>, fs: Node<FileSystem>),
    }
}

syntax_enum! {
    /// A disk image format.
    pub enum ImageType = "ImageType".into();
    {
        /// raw
        Raw,
        /// qcow2
        QCow2,
        /// vmdk
        Vmdk,
    }
}

syntax_enum! {
    /// A file system kind.
    pub enum FileSystem = "FileSystem".into();
    {
        /// None.
        NoFileSystem,
        /// ext4.
        Ext4,
        /// ext4 with 64bit (deprecated).
        Ext4_64,
        /// ISO9660.
        ISO9660,
        /// FAT.
        VFAT,
    }
}

syntax_enum! {
    /// A size.
    pub enum ImageSize = "ImageSize".into();
    {
        /// Amount and unit.
        ImageSize(amount: Node<i64>, unit: Node<SizeUnit>),
    }
}

syntax_enum! {
    /// A binary size unit.
    pub enum SizeUnit = "SizeUnit".into();
    {
        /// KiB
        KB,
        /// MiB
        MB,
        /// GiB
        GB,
    }
}

syntax_enum! {
    /// How an image is resized.
    pub enum ImageResize = "ImageResize".into();
    {
        /// The container only.
        ResizeImage(size: Node<ImageSize>),
        /// The file system (and container).
        Resize(size: Node<ImageSize>),
        /// Minimal file system plus an increment.
        ShrinkToMinimumAndIncrease(size: Node<ImageSize>),
        /// Minimal file system.
        ShrinkToMinimum,
        /// Unchanged.
        KeepSize,
    }
}

syntax_enum! {
    /// The script of a `VmImages` build (docs/COMPATIBILITY.md#script-types).
    pub enum VmScript = "VmScript".into();
    {
        /// Architecture, shared directories, script.
        VmScript(arch: Node<CPUArch>, shares: List<SharedDirectory>, script: Node<Script>),
        /// No script.
        NoVmScript,
    }
}

syntax_enum! {
    /// A guest architecture.
    pub enum CPUArch = "CPUArch".into();
    {
        /// x86_64
        X86_64,
        /// i686
        I386,
    }
}

syntax_enum! {
    /// A host directory shared with the guest.
    pub enum SharedDirectory = "SharedDirectory".into();
    {
        /// Read-write.
        SharedDirectory(path: FilePath, mount: Node<MountPoint>),
        /// Read-only.
        SharedDirectoryRO(path: FilePath, mount: Node<MountPoint>),
        /// The instance directory, read-only.
        SharedSources(mount: Node<MountPoint>),
    }
}

syntax_enum! {
    /// A build script.
    pub enum Script = "Script".into();
    {
        /// A sequence.
        Begin(steps: List<Script>),
        /// A command and its arguments.
        Run(command: FilePath, args: List<String>),
        /// A working directory for the nested commands.
        In(dir: FilePath, steps: List<Script>),
        /// A user for the nested commands.
        As(user: Node<String>, steps: List<Script>),
        /// Whether failures of nested commands are ignored.
        IgnoreErrors(ignore: Node<bool>, steps: List<Script>),
        /// Output redirection for the nested commands.
        Verbosity(level: Node<CmdVerbosity>, steps: List<Script>),
        /// Nothing.
        NoOP,
    }
}

syntax_enum! {
    /// Output redirection of script commands.
    pub enum CmdVerbosity = "CmdVerbosity".into();
    {
        /// No redirection.
        Debug,
        /// No redirection.
        Verbose,
        /// stdout discarded.
        OnlyStdErr,
        /// stdout and stderr discarded.
        Quiet,
    }
}

/// The type a constructor name belongs to, for "found `X`, which is a `T`" messages.
pub fn constructor_owner(name: &str) -> Option<&'static str> {
    let tables: [(&'static str, &'static [ConstructorSpec]); 29] = [
        ("ArtifactGenerator", ArtifactGenerator::constructors()),
        ("InstanceId", InstanceId::constructors()),
        ("ArtifactAssembly", ArtifactAssembly::constructors()),
        ("CloudInitType", CloudInitType::constructors()),
        ("ArtifactSource", ArtifactSource::constructors()),
        ("SourceFile", SourceFile::constructors()),
        ("SourceFileConversion", SourceFileConversion::constructors()),
        ("Content", Content::constructors()),
        ("AST", Ast::<YamlObject>::constructors()),
        ("YamlObject", YamlObject::constructors()),
        ("CloudConfigYaml", CLOUD_CONFIG_SPECS),
        ("ErlangPropList", ErlangPropList::constructors()),
        ("SimpleErlangTerm", SimpleErlangTerm::constructors()),
        ("ImageTarget", ImageTarget::constructors()),
        ("MountPoint", MountPoint::constructors()),
        ("ImageDestination", ImageDestination::constructors()),
        ("ImageSource", ImageSource::constructors()),
        ("Partition", Partition::constructors()),
        ("Image", Image::constructors()),
        ("ImageType", ImageType::constructors()),
        ("FileSystem", FileSystem::constructors()),
        ("ImageSize", ImageSize::constructors()),
        ("SizeUnit", SizeUnit::constructors()),
        ("ImageResize", ImageResize::constructors()),
        ("VmScript", VmScript::constructors()),
        ("CPUArch", CPUArch::constructors()),
        ("SharedDirectory", SharedDirectory::constructors()),
        ("Script", Script::constructors()),
        ("CmdVerbosity", CmdVerbosity::constructors()),
    ];
    if name == "True" || name == "False" {
        return Some("Bool");
    }
    tables
        .iter()
        .find(|(_, specs)| specs.iter().any(|s| s.name == name))
        .map(|(ty, _)| *ty)
}

// `SizeUnit` also sizes guest memory in `b9.conf` (`RamSize`), which is
// hashed into the build id.
impl Eq for SizeUnit {}

impl std::hash::Hash for SizeUnit {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
    }
}
