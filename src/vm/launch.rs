//! Everything around a run that does not depend on the job: the appliance
//! (built once per kernel and cached), the backend chosen in b9.conf (one
//! host, or a farm of libvirt hosts: `vm::farm`), the accelerator (`auto`
//! probed once per host and remembered), and short socket paths.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::diag::Diagnostic;
use crate::vm::appliance::{self, Appliance, ApplianceError, ApplianceSource};
use crate::vm::backend::{Accelerator, Hypervisor, VmError, VmSpec};
use crate::vm::farm::{Capacity, Farm, Host};
use crate::vm::libvirt::remote::{self, RemoteLibvirt};
use crate::vm::libvirt::{shares, Libvirt};
use crate::vm::qemu::Qemu;
use crate::vm::request::RunRequest;
use crate::vm::run::{self, Events, Limits, Report, RunError};
use crate::vm::settings::{HypervisorSettings, VmSettings};
use b9_protocol::agent::Network;

/// How long an untested KVM gets to bring the agent up before b9 falls
/// back to TCG (a KVM that only runs special guests hangs instead).
const KVM_PROBE: Duration = Duration::from_secs(20);
/// How long the agent gets to say hello once the accelerator is known.
const HELLO: Duration = Duration::from_secs(120);
/// The appliance kernel's command line. `cryptomgr.notests` skips the
/// crypto algorithms' self-tests and `no_timer_check` the IO-APIC timer
/// check, both slow under TCG (libguestfs boots with them too).
/// `mitigations=off`: the appliance runs one build's commands and nothing
/// else, so the CPU-vulnerability mitigations (which guard the guest's
/// processes from one another, not the host) only cost time: about 0.15 s
/// of a 1.3 s boot under TCG.
const CMDLINE: &str =
    "console=ttyS0 panic=-1 quiet cryptomgr.notests no_timer_check mitigations=off";
/// Unix socket paths must fit in `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

/// Starts appliance runs with the configured backend.
pub struct Launcher {
    farm: Farm,
    appliance: Appliance,
    memory_mb: u32,
    cpus: u32,
    timeout: Option<Duration>,
    cache_dir: PathBuf,
    network: Option<Network>,
}

/// The accelerator, as far as it is known.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AccelChoice {
    Fixed(Accelerator),
    /// `auto` and not yet probed on this host.
    Probe,
}

/// Why the appliance cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No cache directory for the appliance.
    #[error("cannot find a cache directory: $HOME is not set")]
    NoCacheDir,
    /// The guest kernel or its modules were not found.
    #[error("{0}")]
    Kernel(Diagnostic),
    /// The appliance could not be built.
    #[error("{0}")]
    Appliance(#[from] ApplianceError),
}

impl Launcher {
    /// Prepares the appliance and the hypervisor of `settings`.
    pub fn new(settings: &VmSettings) -> Result<Launcher, LaunchError> {
        let cache_dir = settings.cache_dir.clone().ok_or(LaunchError::NoCacheDir)?;
        let paths = settings.kernel.clone().map_err(LaunchError::Kernel)?;
        let source = ApplianceSource {
            kernel: paths.kernel,
            modules_dir: paths.modules_dir,
            agent: appliance::agent_binary()?,
        };
        let appliance = appliance::prepare(&source, &cache_dir.join("appliance"))?;
        let accel_of = |name: &str, remote: bool| match settings.accel {
            Some(a) => AccelChoice::Fixed(a),
            None => remembered(&cache_dir, name).map_or_else(
                || {
                    if remote || kvm_usable() {
                        AccelChoice::Probe
                    } else {
                        AccelChoice::Fixed(Accelerator::Tcg)
                    }
                },
                AccelChoice::Fixed,
            ),
        };
        let hosts = match &settings.hypervisor {
            HypervisorSettings::Qemu { binary } => vec![Host::new(
                Box::new(Qemu {
                    binary: binary.clone(),
                }),
                "qemu",
                false,
                accel_of("accel", false),
                "accel".into(),
                1,
            )],
            HypervisorSettings::Libvirt {
                connection,
                hosts,
                pool,
                vms_per_host,
            } => {
                let uris = if hosts.is_empty() {
                    std::slice::from_ref(connection)
                } else {
                    hosts.as_slice()
                };
                uris.iter()
                    .map(|uri| {
                        let libvirt = Libvirt {
                            uri: uri.clone(),
                            network: settings.network.clone(),
                        };
                        let is_remote = remote::is_remote(uri) || !hosts.is_empty();
                        let file = if is_remote {
                            format!("accel-{}", short_hash(uri))
                        } else {
                            "accel".to_string()
                        };
                        let hypervisor: Box<dyn Hypervisor + Send> = if is_remote {
                            Box::new(RemoteLibvirt {
                                libvirt: libvirt.clone(),
                                pool: pool.clone(),
                            })
                        } else {
                            Box::new(libvirt)
                        };
                        let slots = if hosts.is_empty() {
                            usize::MAX
                        } else {
                            *vms_per_host as usize
                        };
                        let (uri, pool) = (uri.clone(), pool.clone());
                        Host::new(
                            hypervisor,
                            &uri,
                            is_remote,
                            accel_of(&file, is_remote),
                            file,
                            slots,
                        )
                        .with_capacity(Box::new(move || remote::capacity(&uri, &pool)))
                    })
                    .collect()
            }
        };
        let network = settings
            .network
            .as_ref()
            .map(|_| match settings.hypervisor {
                // QEMU's user-mode networking: fixed addresses, NAT to the host's network.
                HypervisorSettings::Qemu { .. } => Network {
                    dhcp: false,
                    address: "10.0.2.15/24".into(),
                    gateway: "10.0.2.2".into(),
                    dns: "10.0.2.3".into(),
                },
                HypervisorSettings::Libvirt { .. } => Network {
                    dhcp: true,
                    address: String::new(),
                    gateway: String::new(),
                    dns: String::new(),
                },
            });
        Ok(Launcher {
            farm: Farm::new(
                hosts,
                Capacity {
                    cpus: settings.cpus.into(),
                    memory: u64::from(settings.memory_mb) << 20,
                },
            ),
            appliance,
            memory_mb: settings.memory_mb,
            cpus: settings.cpus,
            timeout: settings.timeouts.limit,
            cache_dir,
            network,
        })
    }

    /// The hypervisor's name.
    pub fn hypervisor_name(&self) -> &'static str {
        self.farm.name()
    }

    /// Boots the appliance with what `request` attaches, runs its job and
    /// stops the VM: on a host of the farm with a free place; a host that
    /// cannot be reached is skipped, one lost during the run gets the run
    /// retried once on another host.
    pub fn run(&self, request: &RunRequest, events: &mut dyn Events) -> Result<Report, RunError> {
        self.farm.run(|host| self.run_on(host, request, events))
    }

    /// A run on `host`.
    fn run_on(
        &self,
        host: &Host,
        request: &RunRequest,
        events: &mut dyn Events,
    ) -> Result<Report, RunError> {
        let runtime = RuntimeDir::create()?;
        let lowered = if host.remote {
            let dir = request.console_log.parent().unwrap_or(&runtime.0);
            Some(shares::lower(request, dir)?)
        } else {
            None
        };
        let request = lowered.as_ref().map_or(request, |l| &l.request);
        let (choice, _probing) = host.accel();
        let (accel, hello) = match choice {
            AccelChoice::Fixed(a) => (a, HELLO),
            AccelChoice::Probe => {
                tracing::info!("probing KVM on {}", host.name);
                (Accelerator::Kvm, KVM_PROBE)
            }
        };
        let (result, booted) = self.attempt(host, request, events, &runtime.0, accel, hello);
        let result = match choice {
            AccelChoice::Probe if booted => {
                self.remember(host, Accelerator::Kvm);
                result
            }
            AccelChoice::Probe if !matches!(result, Err(RunError::Interrupted)) => {
                self.fall_back(host, result, request, events, &runtime.0)
            }
            _ => result,
        };
        if let (Some(lowered), Ok(_)) = (&lowered, &result) {
            lowered.write_back()?;
        }
        result
    }

    /// One boot with `accel`; also tells whether the agent said hello.
    fn attempt(
        &self,
        host: &Host,
        request: &RunRequest,
        events: &mut dyn Events,
        runtime: &Path,
        accel: Accelerator,
        hello: Duration,
    ) -> (Result<Report, RunError>, bool) {
        let spec = self.spec(request, runtime, accel);
        let limits = Limits {
            timeout: self.timeout,
            hello,
        };
        let mut booted = false;
        let result = run::run(
            host.hypervisor.as_ref(),
            &spec,
            &request.job(self.network.clone()),
            &limits,
            events,
            &mut booted,
        );
        (result, booted)
    }

    /// KVM did not bring the appliance up (it hung, or QEMU refused it):
    /// reruns under TCG, and remembers TCG for this host once TCG boots.
    fn fall_back(
        &self,
        host: &Host,
        failed: Result<Report, RunError>,
        request: &RunRequest,
        events: &mut dyn Events,
        runtime: &Path,
    ) -> Result<Report, RunError> {
        if let Err(e) = &failed {
            tracing::warn!(
                "KVM did not bring the appliance up on {} ({e}); trying TCG",
                host.name
            );
        }
        let (result, booted) =
            self.attempt(host, request, events, runtime, Accelerator::Tcg, HELLO);
        if booted {
            tracing::warn!(
                "using TCG on {} from now on (remembered in {})",
                host.name,
                self.cache_dir.display()
            );
            self.remember(host, Accelerator::Tcg);
        }
        result
    }

    fn remember(&self, host: &Host, accel: Accelerator) {
        host.set_accel(AccelChoice::Fixed(accel));
        let word = match accel {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        };
        let _ = std::fs::create_dir_all(&self.cache_dir);
        if let Err(e) = std::fs::write(self.cache_dir.join(&host.accel_file), word) {
            tracing::warn!("cannot remember the accelerator: {e}");
        }
    }

    fn spec(&self, request: &RunRequest, runtime: &Path, accel: Accelerator) -> VmSpec {
        VmSpec {
            name: format!(
                "b9-{}-{}",
                sanitize(&request.name),
                runtime.file_name().map_or_else(String::new, |n| n
                    .to_string_lossy()
                    .trim_start_matches("b9.")
                    .to_string())
            ),
            kernel: self.appliance.kernel.clone(),
            initrd: self.appliance.initrd.clone(),
            cmdline: CMDLINE.into(),
            memory_mb: self.memory_mb,
            cpus: self.cpus,
            accel,
            disks: request.disks.iter().map(|d| d.disk.clone()).collect(),
            shares: request.shares.iter().map(|s| s.share.clone()).collect(),
            agent_socket: runtime.join("agent.sock"),
            runtime_dir: runtime.to_path_buf(),
            console_log: request.console_log.clone(),
            network: self.network.is_some(),
            instance: request.name.clone(),
            events: request.events.clone(),
        }
    }
}

/// A [`Launcher`] made on first use (building the appliance only when an
/// artifact needs it).
pub struct LazyLauncher {
    settings: VmSettings,
    cell: OnceLock<Result<Launcher, Arc<LaunchError>>>,
}

impl LazyLauncher {
    /// Remembers the VM settings.
    pub fn new(settings: VmSettings) -> LazyLauncher {
        LazyLauncher {
            settings,
            cell: OnceLock::new(),
        }
    }

    /// The VM settings.
    pub fn settings(&self) -> &VmSettings {
        &self.settings
    }

    /// The launcher, prepared the first time.
    pub fn get(&self) -> Result<&Launcher, Arc<LaunchError>> {
        self.cell
            .get_or_init(|| Launcher::new(&self.settings).map_err(Arc::new))
            .as_ref()
            .map_err(Arc::clone)
    }
}

impl std::fmt::Debug for LazyLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyLauncher")
    }
}

/// 16 hex digits of a hash of `text` (a host's URI in file names).
fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The accelerator a previous probe chose on a host (remembered in `file`).
fn remembered(cache_dir: &Path, file: &str) -> Option<Accelerator> {
    match std::fs::read_to_string(cache_dir.join(file)).ok()?.trim() {
        "kvm" => Some(Accelerator::Kvm),
        "tcg" => Some(Accelerator::Tcg),
        _ => None,
    }
}

/// `/dev/kvm` opens read-write (necessary, not sufficient: see the probe).
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Letters, digits and `-` of a name, for domain names.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect()
}

/// A private directory with a short path for the run's sockets; removed
/// when dropped.
struct RuntimeDir(PathBuf);

impl RuntimeDir {
    fn create() -> Result<RuntimeDir, VmError> {
        let tmp = std::env::temp_dir();
        let base = if tmp.as_os_str().len() + 32 > MAX_SOCKET_PATH {
            PathBuf::from("/tmp")
        } else {
            tmp
        };
        // Those of killed b9 processes.
        crate::stale::sweep(&base, |name| crate::stale::pid_after(name, "b9.", "b9."));
        for attempt in 0..100u32 {
            let dir = base.join(format!("b9.{}.{attempt}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(RuntimeDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(VmError::Io {
                        op: "create",
                        path: dir,
                        source,
                    })
                }
            }
        }
        Err(VmError::NoRunDir(base))
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
