//! rdio-verbs transport (work in progress).
