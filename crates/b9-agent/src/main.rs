//! `b9-agent`: PID 1 of the b9 appliance.
//!
//! It loads the kernel modules, finds its virtio-serial port, says hello to
//! the host, receives a [`Job`], mounts the build images and shares under
//! `/sysroot`, runs the script's commands chrooted there (streaming their
//! output), resizes file systems, unmounts everything, reports and powers
//! the machine off. See the `b9-protocol` crate for the messages.

// The agent is the only crate of b9 with `unsafe` code (system calls libc
// and rustix do not wrap safely); every block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod copytree;
mod dhcp;
mod disks;
mod freeze;
mod fsuuid;
mod init;
mod inodeflags;
mod modules;
mod net;
mod port;
mod pty;
mod reaper;
mod resize;
mod run;
mod spawn;
mod sys;
mod users;

use std::collections::HashMap;
use std::path::PathBuf;

use b9_protocol::agent::{self as protocol, Job, ToAgent, ToHost, VERSION};

use crate::disks::Mounts;
use crate::port::{log, Port};

fn main() {
    // It mounts, loads modules and powers the machine off: only as the
    // appliance's init, never on a host by mistake.
    if std::process::id() != 1 {
        eprintln!("b9-agent: runs only as PID 1 of the b9 appliance (b9 starts it in the guest)");
        std::process::exit(2);
    }
    init::early();
    reaper::start();
    log(format!("starting (kernel {})", sys::kernel_release()));
    modules::load_all();
    match port::open() {
        Ok(port) => session(port),
        Err(e) => log(format!("no connection to the host: {e}")),
    }
    init::power_off()
}

/// Hello, the job, the report.
fn session(mut port: Port) {
    let hello = ToHost::Hello {
        version: VERSION,
        kernel: sys::kernel_release(),
    };
    if let Err(e) = port.sender.send(&hello) {
        log(format!("cannot greet the host: {e}"));
        return;
    }
    let job = match receive_job(&mut port) {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(e) => {
            fail(&port, &e);
            return;
        }
    };
    let mut mounts = Mounts::default();
    let done = execute(&job, port, &mut mounts);
    let sender = done.1;
    let unmounted = mounts.unmount_all();
    let outcome = done.0.and(unmounted);
    let msg = match outcome {
        Ok(()) => {
            log("done");
            ToHost::Done
        }
        Err(message) => {
            log(format!("failed: {message}"));
            ToHost::Failed { message }
        }
    };
    if let Err(e) = sender.send(&msg) {
        port::console(&format!("cannot report to the host: {e}"));
    }
}

/// Waits for the job; `None` when the host aborts.
fn receive_job(port: &mut Port) -> Result<Option<Job>, String> {
    let frame = port
        .recv()
        .map_err(|e| format!("waiting for the job: {e}"))?;
    match protocol::decode::<ToAgent>(&frame).map_err(|e| e.to_string())? {
        ToAgent::Job(job) => Ok(Some(*job)),
        ToAgent::Abort { reason } => {
            log(format!("the host aborted: {reason}"));
            Ok(None)
        }
        other => Err(format!("expected a job, got {other:?}")),
    }
}

fn fail(port: &Port, message: &str) {
    log(format!("failed: {message}"));
    let _ = port.sender.send(&ToHost::Failed {
        message: message.to_string(),
    });
}

/// Mounts, runs, resizes. Returns the outcome and the sender (the port's
/// reader may have gone to the interactive session).
fn execute(job: &Job, port: Port, mounts: &mut Mounts) -> (Result<(), String>, port::Sender) {
    let Port { sender, reader } = port;
    let result = prepare(job, mounts).and_then(|(devices, mut targets)| {
        resize::resize_all(&job.grow_first, &mut targets, &devices, mounts, &sender)?;
        let ok = if job.interactive {
            let cmd = job
                .commands
                .first()
                .ok_or("interactive job without a command")?;
            pty::run_interactive(cmd, reader, &sender)
        } else {
            let host = watch_host(reader);
            let frozen: Vec<freeze::Target> = job
                .disks
                .iter()
                .filter_map(|d| {
                    let path = targets.get(&d.serial)?.clone();
                    Some(freeze::Target::new(path, devices.get(&d.serial)?))
                })
                .collect();
            let mut pause = |index: usize| {
                if job.pause_after.contains(&index) {
                    freeze::checkpoint(index, &frozen, &sender, &host)
                } else {
                    Ok(())
                }
            };
            run::run_all(&job.commands, &sender, &mut pause)
        }
        .map_err(|e| format!("running the script: {e}"))?;
        run::kill_leftovers();
        if ok {
            resize::resize_all(&job.resizes, &mut targets, &devices, mounts, &sender)?;
        }
        Ok(())
    });
    (result, sender)
}

/// Powers the machine off when the host closes the port while the job
/// runs: b9 was killed, and nobody would ever stop this VM otherwise (the
/// kernel reports a closed host side as end of file). The host's messages
/// during a non-interactive job ([`ToAgent::Continue`] after checkpoints)
/// come out of the returned channel.
fn watch_host(mut reader: std::fs::File) -> std::sync::mpsc::Receiver<ToAgent> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        match protocol::read_frame(&mut reader) {
            Ok(Some(frame)) => {
                if let Ok(msg) = protocol::decode::<ToAgent>(&frame) {
                    let _ = tx.send(msg);
                }
            }
            Ok(None) | Err(_) => {
                port::console("the host closed the port: powering off");
                init::power_off();
            }
        }
    });
    rx
}

/// Serial -> path maps (devices, mount points).
type Places = (HashMap<String, PathBuf>, HashMap<String, PathBuf>);

/// Finds the disks and makes every mount of the new root; returns where
/// each disk is (device) and where it is mounted.
fn prepare(job: &Job, mounts: &mut Mounts) -> Result<Places, String> {
    let devices = disks::find_disks(&serials(job))?;
    if job.disks.is_empty() {
        // Only file-system resizes of unmounted images: no new root.
        if !job.commands.is_empty() {
            return Err("the job has no disk to mount at /".into());
        }
        return Ok((devices, HashMap::new()));
    }
    let targets = disks::mount_disks(&job.disks, &devices, mounts)?;
    disks::mount_shares(&job.shares, mounts)?;
    disks::mount_api(mounts)?;
    if let Some(net) = &job.network {
        net::configure(net, mounts)?;
    }
    Ok((devices, targets))
}

/// The serials of the disks to mount or resize (scratch disks are looked
/// up when a shrink needs them).
fn serials(job: &Job) -> Vec<&str> {
    let mut serials: Vec<&str> = job.disks.iter().map(|d| d.serial.as_str()).collect();
    for r in job.grow_first.iter().chain(&job.resizes) {
        if !serials.contains(&r.serial.as_str()) {
            serials.push(&r.serial);
        }
    }
    serials
}
