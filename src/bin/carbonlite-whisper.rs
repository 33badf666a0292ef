//! `carbonlite-whisper`: whisper 1.1.10's command-line tools as subcommands.
#![deny(unsafe_code)]

#[path = "carbonlite_whisper/args.rs"]
#[allow(dead_code)]
mod args;
#[path = "carbonlite_whisper/pyfmt.rs"]
#[allow(dead_code)]
mod pyfmt;
#[path = "carbonlite_whisper/pytime.rs"]
#[allow(dead_code)]
mod pytime;

fn main() {}
