//! Trust on first use: the server's host key checked against (and learnt
//! into) the known_hosts file.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys;

use super::HostKeyPolicy;

/// Outcome of the host key check, kept for a precise error message.
#[derive(Debug)]
pub(super) enum KeyVerdict {
    Changed(usize),
    Unknown,
    KnownHostsError(String),
}

/// The russh handler: checks (and learns) the server's host key.
pub(super) struct Client {
    /// The server's host name, as written in known_hosts.
    pub(super) host: String,
    /// The server's port.
    pub(super) port: u16,
    /// The known_hosts file.
    pub(super) known_hosts: PathBuf,
    /// What to do with an unknown key.
    pub(super) policy: HostKeyPolicy,
    /// The outcome of the check, for the error message.
    pub(super) verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl Client {
    fn check(&self, key: &keys::PublicKey) -> Result<(), KeyVerdict> {
        if self.policy == HostKeyPolicy::AcceptAny {
            return Ok(());
        }
        let known = if self.known_hosts.exists() {
            keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts)
        } else {
            Ok(false)
        };
        match known {
            Ok(true) => Ok(()),
            Err(keys::Error::KeyChanged { line }) => Err(KeyVerdict::Changed(line)),
            Err(e) => Err(KeyVerdict::KnownHostsError(e.to_string())),
            Ok(false) if self.policy == HostKeyPolicy::Strict => Err(KeyVerdict::Unknown),
            Ok(false) => self
                .learn(key)
                .map_err(|e| KeyVerdict::KnownHostsError(e.to_string())),
        }
    }
}

impl Client {
    /// Appends `[host]:port key` (or `host key` for port 22) to known_hosts,
    /// creating the file and its directory when missing.
    fn learn(&self, key: &keys::PublicKey) -> Result<(), Box<dyn std::error::Error>> {
        use std::io::{Seek, SeekFrom};
        if let Some(parent) = self.known_hosts.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.known_hosts)?;
        let mut line = String::new();
        if file.seek(SeekFrom::End(0))? > 0 {
            file.seek(SeekFrom::End(-1))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                line.push('\n');
            }
        }
        if self.port == 22 {
            line.push_str(&self.host);
        } else {
            line.push_str(&format!("[{}]:{}", self.host, self.port));
        }
        line.push(' ');
        line.push_str(&key.to_openssh()?);
        line.push('\n');
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.check(&server_public_key.public_key()) {
            Ok(()) => Ok(true),
            Err(v) => {
                if let Ok(mut slot) = self.verdict.lock() {
                    *slot = Some(v);
                }
                Ok(false)
            }
        }
    }
}
