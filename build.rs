//! Generates the C header with cbindgen into $OUT_DIR/carbonlite.h. The checked-in copy in
//! include/ is compared against it by tests/header.rs (CARBONLITE_BLESS=1 rewrites it), so a
//! build never touches the source tree.
fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => {
            b.write_to_file(out.join("carbonlite.h"));
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    }
}
