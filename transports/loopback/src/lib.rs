//! rdio-loopback transport (work in progress).
