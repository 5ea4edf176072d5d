//! `b9-libvirt`: b9's libvirt helper. It holds one libvirt connection and
//! at most one transient domain, answering b9's requests on stdin and
//! stdout (`b9_protocol::libvirt`). It is the only b9 program that links
//! libvirt. When its stdin closes it destroys the domain and exits.

use std::io::{BufReader, Write};
use std::process::ExitCode;

use b9_protocol::libvirt::{self as wire, DomainState, Reply, Request, Stage};
use virt::connect::Connect;
use virt::domain::{self, Domain};
use virt::enumutil::Enum;
use virt::error::{Error, ErrorNumber};

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
    let mut held: Option<Held> = None;
    loop {
        let reply = match wire::receive::<Request>(&mut input) {
            Ok(Some(request)) => handle(&mut held, request),
            Ok(None) => break,
            Err(e) => failed(Stage::Protocol, format!("unreadable request: {e}")),
        };
        if wire::send(&mut output, &reply).is_err() {
            break;
        }
    }
    let _ = output.flush();
    if let Some(held) = held {
        // b9 is gone or done: a domain still running must not outlive it.
        let _ = held.domain.destroy();
    }
    ExitCode::SUCCESS
}

/// The connection and the domain created on it.
struct Held {
    // The domain's reference goes before the connection's.
    domain: Domain,
    conn: Connect,
    uri: String,
}

fn failed(stage: Stage, message: String) -> Reply {
    Reply::Failed { stage, message }
}

/// Answers one request.
fn handle(held: &mut Option<Held>, request: Request) -> Reply {
    match (request, held.as_mut()) {
        (Request::Start { uri, xml }, None) => match start(&uri, &xml) {
            Ok(new) => {
                *held = Some(new);
                Reply::Started
            }
            Err(reply) => reply,
        },
        (Request::Start { .. }, Some(_)) => {
            failed(Stage::Protocol, "a domain is already running".to_string())
        }
        (Request::State, Some(h)) => Reply::State(state(h)),
        (Request::Stop, Some(h)) => match h.domain.destroy() {
            Ok(()) => Reply::Stopped,
            Err(e) if is_already_gone(&e) => Reply::Stopped,
            Err(e) => failed(Stage::Destroy, e.message().to_string()),
        },
        (Request::State | Request::Stop, None) => {
            failed(Stage::Protocol, "no domain was started".to_string())
        }
    }
}

/// Connects and creates the domain, destroyed by libvirt when this
/// connection closes (the helper ended, however it ended).
fn start(uri: &str, xml: &str) -> Result<Held, Reply> {
    let conn =
        Connect::open(Some(uri)).map_err(|e| failed(Stage::Connect, e.message().to_string()))?;
    let domain = conn
        .create_domain_xml(xml, virt::sys::VIR_DOMAIN_START_AUTODESTROY)
        .map_err(|e| failed(Stage::Create, e.message().to_string()))?;
    Ok(Held {
        domain,
        conn,
        uri: uri.to_string(),
    })
}

/// The domain's state, with libvirt's reason when it cannot be asked.
fn state(h: &Held) -> DomainState {
    if !h.conn.is_alive().unwrap_or(false) {
        return DomainState::Gone(format!("lost the connection to libvirt at {}", h.uri));
    }
    let answer = match h.domain.state() {
        Ok((Enum::Known(state), _reason)) => Ok(state),
        // virt 0.5 drops virDomainGetState's error and reports an unknown
        // state: ask in a way that carries the error.
        Ok((Enum::Unknown(_), _reason)) => h.domain.is_active().map(|active| {
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
