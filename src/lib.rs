//! carbonlite: an embeddable Graphite storage engine.
//!
//! The pipeline mirrors go-carbon, one module per stage: [`parse`] turns wire bytes into
//! [`points::Point`]s, [`cache`] holds them sharded in memory, the [`persister`] writes them
//! through the [`whisper`] engine into files laid out by [`schema`] and [`names`]. [`engine`]
//! owns the whole pipeline; [`ffi`] is the C boundary and, with the whisper mmap, the
//! cache's prefetch hint, the plaintext parser's ASCII name → `&str` and its SSE2 newline
//! masks, the only place allowed `unsafe`.
#![deny(unsafe_code)]

pub mod cache;
pub mod carbonlink;
pub mod carbonserver;
pub mod cluster;
pub mod config;
pub mod dump;
mod durability;
pub mod engine;
pub mod error;
#[allow(unsafe_code)] // the C boundary is the one place raw pointers are handled
pub mod ffi;
pub mod find;
pub mod journal;
pub mod names;
pub mod parse;
pub mod persister;
pub mod points;
pub mod python;
pub mod receiver;
pub mod schema;
pub mod stats;
pub mod tags;
#[cfg(test)]
mod test_rng;
pub mod whisper;

pub use error::{Error, Result};
pub use points::Point;
