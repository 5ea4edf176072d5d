//! `FromURL`: downloads with an HTTP client (no curl). Redirects are
//! followed (at most 10), an HTTP status of 400 or more is an error, and the
//! whole download has a time limit.

use std::io::Read;
use std::time::Duration;

use crate::content::error::ContentError;

/// The largest body accepted (a generated file, not an image).
const MAX_BODY: u64 = 1 << 30;

/// Downloads `url`; `timeout` bounds the whole transfer.
pub fn download(url: &str, timeout: Option<Duration>) -> Result<Vec<u8>, ContentError> {
    let http = |message: String| ContentError::Http {
        url: url.to_string(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(timeout)
        .http_status_as_error(false)
        .max_redirects(10)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| http(describe(&e, timeout)))?;
    let status = response.status().as_u16();
    if status >= 400 {
        return Err(ContentError::HttpStatus {
            url: url.to_string(),
            status,
        });
    }
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| http(format!("reading the body: {e}")))?;
    if body.len() as u64 > MAX_BODY {
        return Err(http(format!("the body is larger than {MAX_BODY} bytes")));
    }
    Ok(body)
}

fn describe(e: &ureq::Error, timeout: Option<Duration>) -> String {
    match (e, timeout) {
        (ureq::Error::Timeout(_), Some(t)) => {
            format!("no complete answer within {} s", t.as_secs())
        }
        (ureq::Error::TooManyRedirects, _) => "too many redirects (more than 10)".into(),
        _ => e.to_string(),
    }
}
