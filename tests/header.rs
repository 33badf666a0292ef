//! include/carbonlite.h must be exactly what cbindgen generates from src/ffi now.
//! `CARBONLITE_BLESS=1 cargo test --test header` rewrites the checked-in copy.

#[test]
fn header_is_current() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/carbonlite.h"))
        .expect("build.rs writes $OUT_DIR/carbonlite.h");
    let checked_in_path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/carbonlite.h");
    if std::env::var_os("CARBONLITE_BLESS").is_some() {
        std::fs::write(checked_in_path, &generated).expect("write include/carbonlite.h");
        return;
    }
    let checked_in = std::fs::read_to_string(checked_in_path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/carbonlite.h is stale: run `CARBONLITE_BLESS=1 cargo test --test header` and commit it"
    );
}

#[test]
fn header_declares_the_c_api() {
    let h = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/carbonlite.h")).unwrap();
    for needle in [
        "typedef struct carbon carbon;",
        "carbon *carbon_open(const char *data_dir, const char *options);",
        "int64_t carbon_add_line(carbon *c, const char *buf, size_t len);",
        "int carbon_add(carbon *c, const char *metric, double value, int64_t timestamp);",
        "int carbon_flush(carbon *c);",
        "int whisper_fetch(carbon *c,",
        "void whisper_series_free(whisper_series *s);",
        "int carbon_stats(carbon *c, carbon_counters *out);",
        "void carbon_close(carbon *c);",
        "const char *carbon_last_error(void);",
        "CARBON_ENOTFOUND = -2,",
    ] {
        assert!(h.contains(needle), "header lacks {needle:?}");
    }
}
