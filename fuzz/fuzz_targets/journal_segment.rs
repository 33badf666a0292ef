//! Arbitrary bytes as a journal segment file: the scan must never panic, and every record it
//! calls intact must decode and lie inside the input.
#![no_main]

use carbonlite::journal::{record, segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = segment::scan(data);
    let mut end = 0;
    for r in &s.records {
        assert!(r.start >= end && r.end <= data.len(), "records overlap or overrun");
        end = r.end;
        let payload = &data[r.start + record::HEADER_LEN..r.end];
        let n = record::decode(payload, |_, _| {}).expect("intact record must decode");
        assert!(n > 0 || payload.is_empty());
    }
    if let Some(t) = s.torn_tail {
        assert!(t <= data.len() && t >= end);
    }
});
