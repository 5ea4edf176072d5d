//! Command-line definitions (docs/COMPATIBILITY.md#cli): the original's global options and
//! commands, plus `check`, `show` and `completions`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// How `b9 build --events` writes events.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EventFormat {
    /// One JSON object per line (docs/events.schema.json).
    Json,
}

/// b9 builds VM images, cloud-init media and generated files from `.b9` build files.
#[derive(Debug, Parser)]
#[command(
    name = "b9",
    version,
    about,
    after_help = "Arguments after `--` are bound to ${arg_1}, ${arg_2}, ... in the build files."
)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Global options (docs/COMPATIBILITY.md#global-options). Each overrides the configuration only when given.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file; repeat to merge several (later ones win).
    #[arg(
        short = 'c',
        long = "configuration-file",
        value_name = "FILENAME",
        global = true
    )]
    pub config: Vec<PathBuf>,
    /// Log everything (trace level).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Log errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Append all log messages to this file.
    #[arg(short = 'l', long = "log-file", value_name = "FILENAME", global = true)]
    pub log_file: Option<PathBuf>,
    /// The project root (`${projectRoot}`); build directories are made inside it.
    #[arg(
        short = 'b',
        long = "build-root-dir",
        value_name = "DIRECTORY",
        global = true
    )]
    pub build_root: Option<PathBuf>,
    /// Keep the build directory after the build.
    #[arg(short = 'k', long = "keep-build-dir", global = true)]
    pub keep_build_dir: bool,
    /// Use a build id derived from the configuration only (same directory every run).
    #[arg(short = 'u', long = "predictable-build-dir", global = true)]
    pub predictable_build_dir: bool,
    /// The shared-image cache directory.
    #[arg(long = "repo-cache", value_name = "DIRECTORY", global = true)]
    pub repo_cache: Option<PathBuf>,
    /// The remote repository to use.
    #[arg(
        short = 'r',
        long = "repo",
        value_name = "REPOSITORY_ID",
        global = true
    )]
    pub repo: Option<String>,
    /// The libvirt network for build VMs; `host` means none.
    #[arg(long, value_name = "NETWORK_ID", global = true)]
    pub network: Option<String>,
    /// The VM accelerator: kvm, tcg, or auto (kvm when it really runs guests).
    #[arg(long, value_enum, global = true)]
    pub accel: Option<AccelArg>,
}

/// `--accel` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccelArg {
    /// KVM when it really runs guests, else TCG.
    Auto,
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version.
    Version,
    /// Build every artifact of the build files.
    Build {
        /// The build files and arguments.
        #[command(flatten)]
        files: BuildFiles,
        /// Run every guest step, taking nothing from the step cache and storing nothing.
        #[arg(long)]
        no_cache: bool,
        /// Write the build's events on stdout in this format (docs/EVENTS.md).
        #[arg(long, visible_alias = "log-format", value_name = "FORMAT")]
        events: Option<EventFormat>,
    },
    /// Check build files completely (syntax, variables, sources, images) without building.
    Check(BuildFiles),
    /// Print the expanded build plan: each instance, its files, inputs and outputs.
    Show {
        /// The build files and arguments.
        #[command(flatten)]
        files: BuildFiles,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite build files in the canonical layout and print them.
    Reformat {
        /// Build files to rewrite.
        #[arg(
            short = 'f',
            long = "project-file",
            value_name = "FILENAME",
            required = true
        )]
        files: Vec<PathBuf>,
        /// Accepted for compatibility with the original; reformat substitutes no variables.
        #[arg(last = true, hide = true)]
        args: Vec<String>,
    },
    /// Run a command (default: a shell) in a transient copy of a shared image or image file, with the working directory at /mnt/CWD.
    Run {
        /// A shared image name or an image file.
        image: String,
        /// The command and its arguments (joined with spaces, run by the image's shell).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Show each libvirt host of `[libvirt] hosts` (or `connection`): reachable, versions, CPUs, memory, KVM, pool space, b9 domains running.
    #[command(alias = "hosts")]
    Farm,
    /// List the shared images in the local cache (or, with -r, a remote's, as of the last pull).
    List,
    /// Upload the newest cached version of a shared image to the selected repository (-r).
    Push {
        /// The shared image name.
        name: String,
    },
    /// Pull the metadata of the selected repositories, and with a name its newest version.
    Pull {
        /// The shared image name.
        name: Option<String>,
    },
    /// Forget the cached metadata of the selected remote repositories.
    CleanRemote,
    /// Add (or replace) a remote repository in the configuration file.
    AddRepo {
        /// Repository id.
        name: String,
        /// Directory on the server.
        remote_directory: String,
        /// SSH private key file.
        ssh_priv_key_file: PathBuf,
        /// Server host name or address.
        host: String,
        /// SSH port.
        port: u16,
        /// Login user.
        user: String,
    },
    /// Remove cached shared images, keeping the newest `max_cached_shared_images` of each name.
    CleanLocal,
    /// The step cache of guest steps: list, clean.
    Cache {
        /// The cache command.
        #[command(subcommand)]
        command: crate::cli::cache::CacheCommand,
    },
    /// Disk images: info, convert, create, extract-partition.
    Image {
        /// The image command.
        #[command(subcommand)]
        command: crate::cli::image::ImageCommand,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Build files and positional arguments.
#[derive(Debug, Args)]
pub struct BuildFiles {
    /// Build files; several are combined as `Let [] [file1, file2, ...]`.
    #[arg(
        short = 'f',
        long = "project-file",
        value_name = "FILENAME",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Values for ${arg_1}, ${arg_2}, ...
    #[arg(last = true, value_name = "ARG")]
    pub args: Vec<String>,
}
