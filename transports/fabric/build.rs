//! Finds the system libfabric with pkg-config, compiles the C shim that turns
//! libfabric's `static inline` calls into linkable functions, and generates
//! Rust bindings for the headers the crate uses.
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

fn main() {
    println!("cargo:rerun-if-changed=shim/rdio_fabric_shim.h");
    println!("cargo:rerun-if-changed=shim/rdio_fabric_shim.c");

    let lib = pkg_config::Config::new()
        .atleast_version("1.17")
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

    let mut builder = bindgen::Builder::default()
        .header_contents("rdio_fabric_wrapper.h", &wrapper)
        .clang_arg("-Ishim")
        .allowlist_function("fi_getinfo|fi_freeinfo|fi_dupinfo|fi_strerror|rdio_fi_.*")
        .allowlist_type("fi_.*|fid.*")
        .allowlist_var("FI_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on the libfabric headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("libfabric_bindings.rs"))
        .expect("could not write the libfabric bindings");
}
