//! Arbitrary bytes through the plaintext protocol parser: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = carbonlite::parse::plain::parse_line(data, 1_700_000_000);
    let _ = carbonlite::parse::plain::for_each_line(data, 1_700_000_000, |_, _| {}, |_| {});
});
