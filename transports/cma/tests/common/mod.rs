//! What the cma integration tests share: a connected pair on 127.0.0.1 and
//! an empty completion to fill arrays with.

#![allow(dead_code)] // each test binary uses its own part

use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::Duration;

use rdio_cma::{CmaTransport, Listener, connect};
use rdio_transport::{Completion, CompletionKind};

/// Long enough for any step of a test on a loaded machine.
pub const SOON: Duration = Duration::from_secs(5);

/// A completion to fill output arrays with.
pub const NONE: Completion = Completion {
    wr_id: 0,
    kind: CompletionKind::Send,
    status: Ok(()),
};

pub fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A client and the server side of its connection, in this process.
pub fn pair() -> (CmaTransport, CmaTransport) {
    let listener = Listener::bind(localhost()).expect("bind");
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0, "port 0 picks a port");
    let server = thread::spawn(move || {
        listener
            .accept(SOON, SOON)
            .expect("accept")
            .expect("a connection")
    });
    let client = connect(addr, SOON).expect("connect");
    (client, server.join().expect("accept thread"))
}
