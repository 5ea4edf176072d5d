//! The agent is the appliance's init: started as an ordinary process (by
//! mistake, on a host) it must do nothing (it would mount, load modules and
//! power the machine off).

use std::process::Command;

#[test]
fn the_agent_refuses_to_run_unless_it_is_pid_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_b9-agent"))
        .output()
        .expect("the agent runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PID 1"), "{err}");
}
