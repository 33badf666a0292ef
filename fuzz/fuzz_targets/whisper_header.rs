//! Arbitrary bytes as a whisper header: `Header::decode` must refuse or accept, never panic,
//! whatever file length it is told.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("fuzz.wsp");
    if let Ok(h) = carbonlite::whisper::Header::decode(data, data.len() as u64, p) {
        // A header accepted for this length must describe a file that fits in it.
        assert!(h.file_size() <= data.len() as u64);
    }
    let _ = carbonlite::whisper::Header::decode(data, u64::MAX, p);
});
