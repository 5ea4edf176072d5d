//! A hostile SFTP server for the remote-name tests: russh's SSH server with
//! russh-sftp's SFTP handler, serving one directory whose listing (names
//! included, such as `../x.b9si`) and file contents the test chooses. Any
//! client key is accepted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Server, Session};
use russh::{Channel, ChannelId};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};

/// The served files: directory, then (name as listed, content).
#[derive(Clone)]
pub struct Tree {
    /// The directory that holds the entries.
    pub dir: String,
    /// Entries in listing order.
    pub entries: Vec<(String, Vec<u8>)>,
}

/// A running server (it lives as long as the test process).
pub struct FakeSftp {
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// Starts the server with host key `host_key` (an OpenSSH private key file).
pub fn start(tree: Tree, host_key: &Path) -> FakeSftp {
    let key = russh::keys::load_secret_key(host_key, None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(serve(tree, key, tx));
    });
    FakeSftp {
        port: rx.recv().unwrap(),
    }
}

async fn serve(tree: Tree, key: PrivateKey, port: std::sync::mpsc::Sender<u16>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    port.send(listener.local_addr().unwrap().port()).unwrap();
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        ..Default::default()
    });
    let mut server = Ssh {
        tree: Arc::new(tree),
        channels: HashMap::new(),
    };
    let _ = server.run_on_socket(config, &listener).await;
}

/// One SSH connection (the server makes one per client).
struct Ssh {
    tree: Arc<Tree>,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl Server for Ssh {
    type Handler = Ssh;

    fn new_client(&mut self, _: Option<SocketAddr>) -> Ssh {
        Ssh {
            tree: Arc::clone(&self.tree),
            channels: HashMap::new(),
        }
    }
}

impl russh::server::Handler for Ssh {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&id) {
            Some(channel) if name == "sftp" => {
                session.channel_success(id)?;
                let sftp = Sftp {
                    tree: Arc::clone(&self.tree),
                    listed: false,
                };
                russh_sftp::server::run(channel.into_stream(), sftp).await;
            }
            _ => session.channel_failure(id)?,
        }
        Ok(())
    }
}

/// The SFTP side: handles are `dir` for the directory and the entry's
/// index for a file.
struct Sftp {
    tree: Arc<Tree>,
    listed: bool,
}

impl Sftp {
    /// The entry whose full path is `path`.
    fn entry(&self, path: &str) -> Option<usize> {
        self.tree
            .entries
            .iter()
            .position(|(name, _)| format!("{}/{name}", self.tree.dir) == path)
    }

    fn attrs_of(&self, path: &str) -> Result<FileAttributes, StatusCode> {
        let mut attrs = FileAttributes::empty();
        if self.tree.dir.starts_with(path) {
            attrs.set_dir(true);
        } else {
            let i = self.entry(path).ok_or(StatusCode::NoSuchFile)?;
            attrs.set_regular(true);
            attrs.size = Some(self.tree.entries[i].1.len() as u64);
        }
        attrs.permissions = attrs.permissions.map(|p| p | 0o644);
        Ok(attrs)
    }

    fn file(&self, handle: &str) -> Result<&[u8], StatusCode> {
        let i: usize = handle.parse().map_err(|_| StatusCode::Failure)?;
        Ok(&self.tree.entries.get(i).ok_or(StatusCode::Failure)?.1)
    }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusCode;

    fn unimplemented(&self) -> StatusCode {
        StatusCode::OpUnsupported
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, StatusCode> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusCode> {
        Ok(Name {
            id,
            files: vec![File::dummy(path)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusCode> {
        Ok(Attrs {
            id,
            attrs: self.attrs_of(&path)?,
        })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusCode> {
        self.stat(id, path).await
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusCode> {
        if path != self.tree.dir {
            return Err(StatusCode::NoSuchFile);
        }
        self.listed = false;
        Ok(Handle {
            id,
            handle: "dir".into(),
        })
    }

    async fn readdir(&mut self, id: u32, _handle: String) -> Result<Name, StatusCode> {
        if std::mem::replace(&mut self.listed, true) {
            return Err(StatusCode::Eof);
        }
        let files = self
            .tree
            .entries
            .iter()
            .map(|(name, data)| {
                let mut attrs = FileAttributes::empty();
                attrs.set_regular(true);
                attrs.size = Some(data.len() as u64);
                File::new(name.clone(), attrs)
            })
            .collect();
        Ok(Name { id, files })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        _flags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, StatusCode> {
        let i = self.entry(&filename).ok_or(StatusCode::NoSuchFile)?;
        Ok(Handle {
            id,
            handle: i.to_string(),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusCode> {
        let mut attrs = FileAttributes::empty();
        attrs.set_regular(true);
        attrs.size = Some(self.file(&handle)?.len() as u64);
        Ok(Attrs { id, attrs })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, StatusCode> {
        let data = self.file(&handle)?;
        let start = usize::try_from(offset).map_err(|_| StatusCode::Eof)?;
        if start >= data.len() {
            return Err(StatusCode::Eof);
        }
        let end = data.len().min(start + len as usize);
        Ok(Data {
            id,
            data: data[start..end].to_vec(),
        })
    }

    async fn close(&mut self, id: u32, _handle: String) -> Result<Status, StatusCode> {
        Ok(Status {
            id,
            status_code: StatusCode::Ok,
            error_message: "Ok".into(),
            language_tag: "en-US".into(),
        })
    }
}
