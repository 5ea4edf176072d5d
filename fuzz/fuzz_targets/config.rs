//! Parses arbitrary text as a `b9.conf` (INI, Haskell-literal values) and as
//! a cached image's `.b9si`: the other texts read through the build
//! language's term parser. Only panics (and stack overflows) fail.
#![no_main]

use b9::repo::SharedImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = b9::config::parse_str("fuzz.conf", text);
    let _ = SharedImage::from_b9si(text, std::path::Path::new("fuzz.b9si"));
});
