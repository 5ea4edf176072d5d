//! Parses arbitrary text as an Erlang term; what parses must print and parse
//! back to the same term. Only panics (and round-trip failures) fail.
#![no_main]

use b9::text::erlang;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(term) = erlang::parse(text) else {
        return;
    };
    let printed = erlang::render(&term);
    let back = erlang::parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
    // NaN never equals itself; compare printouts instead.
    assert_eq!(erlang::render(&back), printed);
});
