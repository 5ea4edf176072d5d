//! Parses arbitrary text as a build file, prints what parses, and parses
//! the printout again; only panics (and unstable printing) fail.
#![no_main]

use b9::diag::source::Source;
use b9::lang::{parse_with_document as parse, print::print_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((_, document)) = parse(Source::new("fuzz.b9", text)) else {
        return;
    };
    let printed = print_document(&document);
    let again = parse(Source::new("printed.b9", printed.clone()));
    let again = again.unwrap_or_else(|d| panic!("printed text does not parse: {d:?}\n{printed}"));
    assert_eq!(print_document(&again.1), printed, "printing is not idempotent");
});
