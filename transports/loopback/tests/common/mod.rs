//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use rdio_transport::{Completion, CompletionKind, Transport, TransportError, WcError, WrId};

pub const PLACEHOLDER: Completion = Completion {
    wr_id: u64::MAX,
    kind: CompletionKind::Send,
    status: Ok(()),
};

/// Everything `endpoint` has to drain right now.
pub fn poll<T: Transport + ?Sized>(endpoint: &mut T) -> Result<Vec<Completion>, TransportError> {
    let mut all = Vec::new();
    let mut out = [PLACEHOLDER; 8];
    loop {
        let drained = endpoint.poll_completions(&mut out)?;
        all.extend_from_slice(&out[..drained]);
        if drained < out.len() {
            return Ok(all);
        }
    }
}

/// Like [`poll`], for an endpoint that must still be connected.
pub fn drain<T: Transport + ?Sized>(endpoint: &mut T) -> Vec<Completion> {
    poll(endpoint).expect("connection is up")
}

pub const fn ok(wr_id: WrId, kind: CompletionKind) -> Completion {
    Completion {
        wr_id,
        kind,
        status: Ok(()),
    }
}

pub const fn failed(wr_id: WrId, kind: CompletionKind, error: WcError) -> Completion {
    Completion {
        wr_id,
        kind,
        status: Err(error),
    }
}

pub const fn recv(len: usize) -> CompletionKind {
    CompletionKind::Recv { len }
}

/// The kind of every failed receive.
pub const FAILED_RECV: CompletionKind = CompletionKind::Recv { len: 0 };
