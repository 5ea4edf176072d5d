//! The helper refuses a b9 that speaks another protocol version.

use std::process::Command;

#[test]
fn libvirt_helper_refuses_another_protocol_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_b9-libvirt"))
        .args(["--protocol", "999"])
        .output()
        .expect("the helper runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another b9 version"), "{err}");
}
