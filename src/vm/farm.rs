//! The hosts runs go to: one (QEMU, a local or remote libvirt) or a farm
//! of libvirt hosts (`[libvirt] hosts`), at most `vms_per_host` runs on
//! each at once. A farm asks each host for its CPUs and free memory
//! (libvirt's node info) before the first run and sends each run to the
//! host with the most capacity left after b9's runs there ([`choose`]),
//! docs/PROTOCOL.md#farm. A host that
//! cannot be reached is skipped from then on with a warning naming it; a
//! host lost during a run gets that run retried once on another host
//! (its inputs uploaded afresh), then the run fails naming host and cause.

use std::cmp::Reverse;
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::Duration;

use crate::vm::backend::{Hypervisor, VmError};
use crate::vm::launch::AccelChoice;
use crate::vm::run::{Report, RunError};

/// How often a run waiting for a free place looks at Ctrl-C.
const WAIT_TICK: Duration = Duration::from_millis(200);

/// What a host has for b9's VMs, or what one VM takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// CPUs.
    pub cpus: u64,
    /// Free memory in bytes.
    pub memory: u64,
}

/// Asks a host for its capacity.
pub(crate) type CapacityProbe = Box<dyn Fn() -> Result<Capacity, VmError> + Send + Sync>;

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
    capacity: Option<CapacityProbe>,
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
            capacity: None,
        }
    }

    /// The same host, its capacity asked with `probe` in a farm.
    pub fn with_capacity(self, probe: CapacityProbe) -> Host {
        Host {
            capacity: Some(probe),
            ..self
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
    /// What one run's VM takes.
    vm: Capacity,
    measured: Once,
    state: Mutex<State>,
    freed: Condvar,
}

/// Runs on each host, their capacity, and why a host is out.
struct State {
    busy: Vec<usize>,
    capacity: Vec<Option<Capacity>>,
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
    /// A farm of `hosts` (at least one) running VMs of size `vm`.
    pub fn new(hosts: Vec<Host>, vm: Capacity) -> Farm {
        let n = hosts.len();
        Farm {
            hosts,
            vm,
            measured: Once::new(),
            state: Mutex::new(State {
                busy: vec![0; n],
                capacity: vec![None; n],
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
        if self.hosts.len() > 1 {
            self.measured.call_once(|| self.measure());
        }
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

    /// Asks every host for its capacity at once; one that cannot be
    /// reached is skipped from then on.
    fn measure(&self) {
        let answers: Vec<Option<Result<Capacity, VmError>>> = std::thread::scope(|scope| {
            let asking: Vec<_> = self
                .hosts
                .iter()
                .map(|host| scope.spawn(|| host.capacity.as_ref().map(|probe| probe())))
                .collect();
            asking
                .into_iter()
                .map(|t| t.join().unwrap_or(None))
                .collect()
        });
        for (index, answer) in answers.into_iter().enumerate() {
            match answer {
                Some(Ok(capacity)) => self.lock().capacity[index] = Some(capacity),
                Some(Err(VmError::HostLost(why))) => {
                    tracing::warn!("skipping libvirt host {}: {why}", self.hosts[index].name);
                    self.mark_down(index, why);
                }
                Some(Err(e)) => tracing::debug!(
                    "no capacity of libvirt host {}: {e}",
                    self.hosts[index].name
                ),
                None => {}
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place on the host [`choose`] picks among those not `tried` and
    /// not down; waits while all are busy.
    fn acquire(&self, tried: &[bool]) -> Result<usize, RunError> {
        let mut state = self.lock();
        loop {
            let usable: Vec<usize> = (0..self.hosts.len())
                .filter(|&i| !tried[i] && state.down[i].is_none())
                .collect();
            if usable.is_empty() {
                return Err(RunError::Start(VmError::HostLost(self.why_none(&state))));
            }
            let candidates: Vec<Candidate> = usable
                .iter()
                .map(|&i| Candidate {
                    index: i,
                    free_places: self.hosts[i].slots.saturating_sub(state.busy[i]),
                    busy: state.busy[i],
                    capacity: state.capacity[i],
                })
                .collect();
            if let Some(i) = choose(&candidates, self.vm) {
                state.busy[i] += 1;
                return Ok(i);
            }
            crate::interrupt::arm();
            if crate::interrupt::cancelled() {
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

/// A host a run could go to, as [`choose`] sees it.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    index: usize,
    free_places: usize,
    /// b9's runs there now.
    busy: usize,
    /// What the host had before b9's runs (`None`: unknown).
    capacity: Option<Capacity>,
}

/// The host for the next run among `candidates`: one with a free place;
/// first those whose free memory, less b9's runs there, still holds a VM
/// of size `vm`; then the most CPUs left after b9's runs, the most memory
/// left, the most free places, the first listed. Unknown capacity counts
/// as fitting but with nothing left.
fn choose(candidates: &[Candidate], vm: Capacity) -> Option<usize> {
    candidates
        .iter()
        .filter(|c| c.free_places > 0)
        .max_by_key(|c| {
            let busy = c.busy as u64;
            let (fits, cpus, memory) = match c.capacity {
                Some(has) => {
                    let memory = has.memory.saturating_sub(busy * vm.memory);
                    (
                        memory >= vm.memory,
                        has.cpus.saturating_sub(busy * vm.cpus),
                        memory,
                    )
                }
                None => (true, 0, 0),
            };
            (fits, cpus, memory, c.free_places, Reverse(c.index))
        })
        .map(|c| c.index)
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

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const VM: Capacity = Capacity {
        cpus: 1,
        memory: GIB,
    };

    fn host(index: usize, free_places: usize, busy: usize, cpus: u64, memory: u64) -> Candidate {
        Candidate {
            index,
            free_places,
            busy,
            capacity: Some(Capacity { cpus, memory }),
        }
    }

    #[test]
    fn the_host_with_most_capacity_left_gets_the_run() {
        // More free places, but fewer CPUs.
        let a = host(0, 4, 0, 2, 16 * GIB);
        let b = host(1, 1, 0, 8, 16 * GIB);
        assert_eq!(choose(&[a, b], VM), Some(1));
        // b9's runs use up what b had.
        let b = host(1, 1, 7, 8, 16 * GIB);
        assert_eq!(choose(&[a, b], VM), Some(0));
        // Same CPUs: the most free memory.
        let a = host(0, 2, 0, 4, 3 * GIB);
        let b = host(1, 2, 0, 4, 6 * GIB);
        assert_eq!(choose(&[a, b], VM), Some(1));
    }

    #[test]
    fn a_host_without_memory_for_a_vm_comes_last() {
        let tight = host(0, 2, 1, 64, 3 * GIB / 2);
        let roomy = host(1, 2, 0, 1, 2 * GIB);
        assert_eq!(choose(&[tight, roomy], VM), Some(1));
        let unknown = Candidate {
            index: 2,
            free_places: 1,
            busy: 0,
            capacity: None,
        };
        assert_eq!(choose(&[tight, unknown], VM), Some(2));
    }

    #[test]
    fn full_hosts_get_nothing_and_ties_go_to_the_first() {
        let a = host(0, 1, 0, 2, 4 * GIB);
        let b = host(1, 1, 0, 2, 4 * GIB);
        assert_eq!(choose(&[a, b], VM), Some(0));
        let full = host(0, 0, 1, 64, 64 * GIB);
        assert_eq!(choose(&[full, b], VM), Some(1));
        assert_eq!(choose(&[full], VM), None);
    }
}
