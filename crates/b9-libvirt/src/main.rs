//! `b9-libvirt`: b9's libvirt helper. It holds one libvirt connection,
//! at most one transient domain and the storage pool of the remote path,
//! answering b9's requests on stdin and stdout (`b9_protocol::libvirt`),
//! and takes its domain's checkpoints (`snapshot.rs`). It
//! is the only b9 program that links libvirt. When its stdin closes it
//! destroys the domain and exits.

mod host;
mod relay;
mod snapshot;
mod volume;

use std::io::{BufReader, Write};
use std::process::ExitCode;

use b9_protocol::libvirt::{self as wire, DomainState, Relay, Reply, Request, Stage};
use virt::connect::Connect;
use virt::domain::{self, Domain};
use virt::enumutil::Enum;
use virt::error::{Error, ErrorNumber};
use virt::storage_pool::StoragePool;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let expected = wire::VERSION.to_string();
    if args != ["--protocol", expected.as_str()] {
        eprintln!(
            "{}: b9's libvirt helper, started by b9 as `{} --protocol {expected}` \
             (got {args:?}: is it from another b9 version?)",
            wire::HELPER,
            wire::HELPER
        );
        return ExitCode::from(2);
    }
    // libvirt's default handler prints every error to stderr; the errors
    // go to b9 in the replies.
    virt::error::clear_error_callback();
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut output = std::io::stdout().lock();
    let mut held = Held::default();
    loop {
        let reply = match wire::receive::<Request>(&mut input) {
            Ok(Some(request)) => {
                // Progress goes out ahead of the reply, at most once per
                // percent (and at the end); a lost b9 shows in the reply's
                // send.
                let mut pace = wire::PerPercent::default();
                let mut progress = |done: u64, total: u64| {
                    if pace.due(done, total) {
                        let _ = wire::send(&mut output, &Reply::Progress { done, total });
                    }
                };
                handle(&mut held, request, &mut progress)
            }
            Ok(None) => break,
            Err(e) => failed(Stage::Protocol, format!("unreadable request: {e}")),
        };
        if wire::send(&mut output, &reply).is_err() {
            break;
        }
    }
    let _ = output.flush();
    if let Some(domain) = held.domain.take() {
        // b9 is gone or done: a domain still running must not outlive it.
        let _ = domain.destroy();
    }
    ExitCode::SUCCESS
}

/// The connection, the pool and the domain created on it.
#[derive(Default)]
struct Held {
    // References go before the connection's.
    domain: Option<Domain>,
    pool: Option<StoragePool>,
    conn: Option<Connect>,
    uri: String,
}

fn failed(stage: Stage, message: String) -> Reply {
    Reply::Failed { stage, message }
}

/// Answers one request; transfers report to `progress`.
fn handle(held: &mut Held, request: Request, progress: volume::Progress<'_>) -> Reply {
    let answer = match request {
        Request::Start { uri, xml, relay } => start(held, &uri, &xml, relay.as_ref()),
        Request::Pool { uri, pool } => open_pool(held, &uri, &pool).map(|_| Reply::Done),
        Request::Upload { name, path } => with_pool(held, |conn, pool| {
            volume::upload(conn, pool, &name, &path, progress).map(Reply::Volume)
        }),
        Request::Shared { name, path, owner } => with_pool(held, |conn, pool| {
            volume::shared(conn, pool, &name, &path, &owner, progress).map(|found| match found {
                Some(at) => Reply::Volume(at),
                None => Reply::Busy,
            })
        }),
        Request::Download { name, path } => with_pool(held, |conn, pool| {
            volume::download(conn, pool, &name, &path, progress).map(|()| Reply::Done)
        }),
        Request::Delete { name } => with_pool(held, |_, pool| {
            volume::delete(pool, &name).map(|()| Reply::Done)
        }),
        Request::Volumes => with_pool(held, |_, pool| volume::list(pool).map(Reply::Volumes)),
        Request::Host { uri, pool } => {
            connect(held, &uri).map(|conn| Reply::Host(host::describe(conn, &pool)))
        }
        Request::State => match &held.domain {
            Some(domain) => Ok(Reply::State(state(held, domain))),
            None => Err(failed(Stage::Protocol, "no domain was started".to_string())),
        },
        Request::Snapshot { disks } => match &held.domain {
            Some(domain) => snapshot::take(domain, &disks)
                .map(|()| Reply::Done)
                .map_err(|e| failed(Stage::Snapshot, e)),
            None => Err(failed(Stage::Protocol, "no domain was started".to_string())),
        },
        Request::Stop => match &held.domain {
            Some(domain) => match domain.destroy() {
                Ok(()) => Ok(Reply::Stopped),
                Err(e) if is_already_gone(&e) => Ok(Reply::Stopped),
                Err(e) => Err(failed(Stage::Destroy, e.message().to_string())),
            },
            None => Err(failed(Stage::Protocol, "no domain was started".to_string())),
        },
    };
    answer.unwrap_or_else(|reply| reply)
}

/// The connection to `uri`, opened on first use.
fn connect<'a>(held: &'a mut Held, uri: &str) -> Result<&'a Connect, Reply> {
    if held.conn.is_some() && held.uri != uri {
        return Err(failed(
            Stage::Protocol,
            format!("already connected to {}, not {uri}", held.uri),
        ));
    }
    if held.conn.is_none() {
        let conn = Connect::open(Some(uri))
            .map_err(|e| failed(Stage::Connect, e.message().to_string()))?;
        held.conn = Some(conn);
        held.uri = uri.to_string();
    }
    held.conn
        .as_ref()
        .ok_or_else(|| failed(Stage::Connect, "no connection".to_string()))
}

/// Connects and finds the active pool `name`.
fn open_pool(held: &mut Held, uri: &str, name: &str) -> Result<(), Reply> {
    let conn = connect(held, uri)?;
    let missing = |why: String| failed(Stage::Pool, why);
    let pool = conn
        .lookup_storage_pool_by_name(name)
        .map_err(|e| missing(e.message().to_string()))?;
    if !pool.is_active().unwrap_or(false) {
        return Err(missing(format!("storage pool '{name}' is not active")));
    }
    held.pool = Some(pool);
    Ok(())
}

/// Runs a volume operation on the pool opened by `Pool`.
fn with_pool(
    held: &Held,
    op: impl FnOnce(&Connect, &StoragePool) -> Result<Reply, String>,
) -> Result<Reply, Reply> {
    match (&held.conn, &held.pool) {
        (Some(conn), Some(pool)) => op(conn, pool).map_err(|e| failed(Stage::Volume, e)),
        _ => Err(failed(Stage::Protocol, "no pool was opened".to_string())),
    }
}

/// Connects and creates the domain, destroyed by libvirt when this
/// connection closes (the helper ended, however it ended); with `relay`,
/// its channel and console are relayed to b9.
fn start(held: &mut Held, uri: &str, xml: &str, relay: Option<&Relay>) -> Result<Reply, Reply> {
    if held.domain.is_some() {
        return Err(failed(
            Stage::Protocol,
            "a domain is already running".to_string(),
        ));
    }
    let conn = connect(held, uri)?;
    let domain = conn
        .create_domain_xml(xml, virt::sys::VIR_DOMAIN_START_AUTODESTROY)
        .map_err(|e| failed(Stage::Create, e.message().to_string()))?;
    if let Some(relay) = relay {
        if let Err(e) = relay::start(conn, &domain, relay) {
            let _ = domain.destroy();
            return Err(failed(Stage::Create, e));
        }
    }
    held.domain = Some(domain);
    Ok(Reply::Started)
}

/// The domain's state, with libvirt's reason when it cannot be asked.
fn state(h: &Held, domain: &Domain) -> DomainState {
    let alive = h
        .conn
        .as_ref()
        .is_some_and(|c| c.is_alive().unwrap_or(false));
    if !alive {
        return DomainState::Gone(format!("lost the connection to libvirt at {}", h.uri));
    }
    let answer = match domain.state() {
        Ok((Enum::Known(state), _reason)) => Ok(state),
        // virt 0.5 drops virDomainGetState's error and reports an unknown
        // state: ask in a way that carries the error.
        Ok((Enum::Unknown(_), _reason)) => domain.is_active().map(|active| {
            if active {
                domain::DomainState::Running
            } else {
                domain::DomainState::Shutoff
            }
        }),
        Err(e) => Err(e),
    };
    match answer {
        Ok(domain::DomainState::Crashed) => DomainState::Crashed,
        Ok(domain::DomainState::Shutoff) => DomainState::Gone("the domain is shut off".to_string()),
        Ok(_) => DomainState::Running,
        Err(e) if is_no_domain(&e) => DomainState::Gone("the domain no longer exists".to_string()),
        Err(e) => DomainState::Gone(format!("libvirt at {}: {}", h.uri, e.message())),
    }
}

/// The domain does not exist (any more).
fn is_no_domain(error: &Error) -> bool {
    matches!(error.code(), Enum::Known(ErrorNumber::NoDomain))
}

/// Destroying a domain that is already gone or not running.
fn is_already_gone(error: &Error) -> bool {
    is_no_domain(error) || matches!(error.code(), Enum::Known(ErrorNumber::OperationInvalid))
}
