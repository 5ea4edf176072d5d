//! The hosts runs go to: one (QEMU, a local or remote libvirt) or a farm
//! of libvirt hosts (`[libvirt] hosts`), at most `vms_per_host` runs on
//! each at once, the host with the most free places first. A host that
//! cannot be reached is skipped from then on with a warning naming it; a
//! host lost during a run gets that run retried once on another host
//! (its inputs uploaded afresh), then the run fails naming host and cause.

use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::vm::backend::{Hypervisor, VmError};
use crate::vm::launch::AccelChoice;
use crate::vm::run::{Report, RunError};

/// How often a run waiting for a free place looks at Ctrl-C.
const WAIT_TICK: Duration = Duration::from_millis(200);

/// One host runs can go to.
pub(crate) struct Host {
    /// Its backend.
    pub hypervisor: Box<dyn Hypervisor + Send>,
    /// Its name in messages (the URI).
    pub name: String,
    /// Shares nothing with b9 (the remote libvirt path).
    pub remote: bool,
    /// The file in b9's cache that remembers its accelerator.
    pub accel_file: String,
    accel: Mutex<AccelChoice>,
    /// Held by the one run probing the accelerator; the others wait for
    /// its answer (`auto` is probed once per host).
    probing: Mutex<()>,
    slots: usize,
}

impl Host {
    /// A host with `slots` places.
    pub fn new(
        hypervisor: Box<dyn Hypervisor + Send>,
        name: &str,
        remote: bool,
        accel: AccelChoice,
        accel_file: String,
        slots: usize,
    ) -> Host {
        Host {
            hypervisor,
            name: name.to_string(),
            remote,
            accel_file,
            accel: Mutex::new(accel),
            probing: Mutex::new(()),
            slots: slots.max(1),
        }
    }

    /// The accelerator as far as known on this host. When it is still to
    /// be probed, also the guard that makes this run the host's only probe:
    /// a run that comes meanwhile waits here for the probe's answer.
    pub fn accel(&self) -> (AccelChoice, Option<MutexGuard<'_, ()>>) {
        if let AccelChoice::Fixed(a) = self.known() {
            return (AccelChoice::Fixed(a), None);
        }
        let guard = self.probing.lock().unwrap_or_else(|p| p.into_inner());
        match self.known() {
            AccelChoice::Fixed(a) => (AccelChoice::Fixed(a), None),
            AccelChoice::Probe => (AccelChoice::Probe, Some(guard)),
        }
    }

    fn known(&self) -> AccelChoice {
        *self.accel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the accelerator of this host.
    pub fn set_accel(&self, accel: AccelChoice) {
        *self.accel.lock().unwrap_or_else(|p| p.into_inner()) = accel;
    }
}

/// The hosts and their places.
pub(crate) struct Farm {
    hosts: Vec<Host>,
    state: Mutex<State>,
    freed: Condvar,
}

/// Runs on each host, and why a host is out.
struct State {
    busy: Vec<usize>,
    down: Vec<Option<String>>,
}

/// How a failed run involved its host.
enum Lost {
    /// The host could not be reached before the run began.
    Unreachable(String),
    /// The host went away during the run.
    During(String),
}

impl Farm {
    /// A farm of `hosts` (at least one).
    pub fn new(hosts: Vec<Host>) -> Farm {
        let n = hosts.len();
        Farm {
            hosts,
            state: Mutex::new(State {
                busy: vec![0; n],
                down: vec![None; n],
            }),
            freed: Condvar::new(),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &'static str {
        self.hosts
            .first()
            .map_or("libvirt", |h| h.hypervisor.name())
    }

    /// Runs `run` on a host with a free place, moving on as the module
    /// describes.
    pub fn run(
        &self,
        mut run: impl FnMut(&Host) -> Result<Report, RunError>,
    ) -> Result<Report, RunError> {
        let mut tried = vec![false; self.hosts.len()];
        let mut retried = false;
        loop {
            let index = self.acquire(&tried)?;
            let host = &self.hosts[index];
            if self.hosts.len() > 1 {
                tracing::info!("running on libvirt host {}", host.name);
            }
            let result = run(host);
            self.release(index);
            let lost = match &result {
                Err(e) if self.hosts.len() > 1 => lost(e),
                _ => None,
            };
            let Some(lost) = lost else { return result };
            tried[index] = true;
            match lost {
                Lost::Unreachable(why) => {
                    tracing::warn!("skipping libvirt host {}: {why}", host.name);
                    self.mark_down(index, why);
                }
                Lost::During(why) if !retried => {
                    tracing::warn!(
                        "lost libvirt host {} during a run ({why}); retrying on another host",
                        host.name
                    );
                    self.mark_down(index, why);
                    retried = true;
                }
                Lost::During(why) => {
                    self.mark_down(index, why.clone());
                    return Err(RunError::Start(VmError::HostLost(format!(
                        "lost libvirt host {} during the retried run: {why}",
                        host.name
                    ))));
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place on the host with the most free places among those not
    /// `tried` and not down; waits while all are busy.
    fn acquire(&self, tried: &[bool]) -> Result<usize, RunError> {
        let mut state = self.lock();
        loop {
            let usable: Vec<usize> = (0..self.hosts.len())
                .filter(|&i| !tried[i] && state.down[i].is_none())
                .collect();
            if usable.is_empty() {
                return Err(RunError::Start(VmError::HostLost(self.why_none(&state))));
            }
            let best = usable
                .iter()
                .copied()
                .filter(|&i| state.busy[i] < self.hosts[i].slots)
                .max_by_key(|&i| (self.hosts[i].slots - state.busy[i], std::cmp::Reverse(i)));
            if let Some(i) = best {
                state.busy[i] += 1;
                return Ok(i);
            }
            if crate::interrupt::flag().load(Ordering::Relaxed) {
                return Err(RunError::Interrupted);
            }
            state = self
                .freed
                .wait_timeout(state, WAIT_TICK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn release(&self, index: usize) {
        let mut state = self.lock();
        state.busy[index] = state.busy[index].saturating_sub(1);
        self.freed.notify_all();
    }

    fn mark_down(&self, index: usize, why: String) {
        self.lock().down[index] = Some(why);
        self.freed.notify_all();
    }

    /// Every host with why it is out.
    fn why_none(&self, state: &State) -> String {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .zip(&state.down)
            .map(|(h, down)| match down {
                Some(why) => format!("{}: {why}", h.name),
                None => format!("{}: tried", h.name),
            })
            .collect();
        format!("no libvirt host left to run on ({})", hosts.join("; "))
    }
}

/// Whether `error` means the host (not the job) failed.
fn lost(error: &RunError) -> Option<Lost> {
    match error {
        RunError::Start(VmError::HostLost(why)) => Some(Lost::Unreachable(why.clone())),
        RunError::Start(VmError::LostHelper(why)) => Some(Lost::During(why.clone())),
        RunError::Gone(why, _) if why.starts_with(LOST_CONNECTION) => {
            Some(Lost::During(why.clone()))
        }
        _ => None,
    }
}

/// How the libvirt helper reports a connection that went away.
const LOST_CONNECTION: &str = "lost the connection to libvirt";
