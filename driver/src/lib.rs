//! rdio std runtime (work in progress).
