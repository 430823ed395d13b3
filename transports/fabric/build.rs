//! Finds the system libfabric's headers with pkg-config, compiles the C shim
//! that turns libfabric's `static inline` calls into linkable functions, and
//! generates Rust bindings for the headers the crate uses.
//!
//! libfabric itself is *not* linked (linked, Debian's costs every process
//! 0.2 s before `main`: docs/PERFORMANCE.md, "Fixed start-up cost"); the
//! crate opens it at run time on first use (`src/library.rs`). The shim's
//! forwarders only go through the ops tables inside libfabric's objects and
//! need no libfabric symbol; the few functions libfabric really exports are
//! bound in a second bindgen pass as a `libloading` struct (`Libfabric`).
//!
//! The bindings are generated here rather than taken from `ofi-libfabric-sys`
//! because that crate requires libfabric >= 2.0, while Debian 12 ships 1.17.

use std::env;
use std::path::PathBuf;

const HEADERS: &[&str] = &[
    "rdma/fabric.h",
    "rdma/fi_domain.h",
    "rdma/fi_endpoint.h",
    "rdma/fi_cm.h",
    "rdma/fi_rma.h",
    "rdma/fi_eq.h",
    "rdma/fi_errno.h",
];

/// The libfabric functions rdio calls that are real exported symbols rather
/// than `static inline` wrappers: resolved with `dlsym` at run time.
const LOADED_FUNCTIONS: &str = "fi_getinfo|fi_freeinfo|fi_dupinfo|fi_strerror|fi_fabric";

fn main() {
    println!("cargo:rerun-if-changed=shim/rdio_fabric_shim.h");
    println!("cargo:rerun-if-changed=shim/rdio_fabric_shim.c");

    // Headers only: no `cargo:rustc-link-lib`, so the binary has no
    // DT_NEEDED entry for libfabric.
    let lib = pkg_config::Config::new()
        .atleast_version("1.17")
        .cargo_metadata(false)
        .probe("libfabric")
        .expect(
            "libfabric >= 1.17 not found by pkg-config (Debian: apt-get install libfabric-dev)",
        );

    let mut shim = cc::Build::new();
    shim.file("shim/rdio_fabric_shim.c")
        .include("shim")
        .warnings(true);
    for path in &lib.include_paths {
        shim.include(path);
    }
    shim.compile("rdio_fabric_shim");

    let mut wrapper = String::new();
    for header in HEADERS {
        wrapper.push_str(&format!("#include <{header}>\n"));
    }
    wrapper.push_str("#include \"rdio_fabric_shim.h\"\n");

    let generate = |builder: bindgen::Builder| {
        let mut builder = builder
            .header_contents("rdio_fabric_wrapper.h", &wrapper)
            .clang_arg("-Ishim")
            .layout_tests(false)
            .generate_comments(false)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
        for path in &lib.include_paths {
            builder = builder.clang_arg(format!("-I{}", path.display()));
        }
        builder
            .generate()
            .expect("bindgen failed on the libfabric headers")
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    // Types, constants and the shim's forwarders (linked from the shim).
    generate(
        bindgen::Builder::default()
            .allowlist_function("rdio_fi_.*")
            .allowlist_type("fi_.*|fid.*")
            .allowlist_var("FI_.*")
            .derive_default(true),
    )
    .write_to_file(out.join("libfabric_bindings.rs"))
    .expect("could not write the libfabric bindings");

    // The functions libfabric exports, as fields of a struct filled in by
    // dlsym when the library is opened. Their argument types are the ones
    // generated above (`allowlist_recursively(false)`).
    generate(
        bindgen::Builder::default()
            .allowlist_function(LOADED_FUNCTIONS)
            .allowlist_recursively(false)
            .dynamic_library_name("Libfabric")
            .dynamic_link_require_all(true),
    )
    .write_to_file(out.join("libfabric_loaded.rs"))
    .expect("could not write the libfabric loader bindings");
}
