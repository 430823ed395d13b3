//! rdio-fabric transport (work in progress).
