//! Property tests for rdio live in tests/.
