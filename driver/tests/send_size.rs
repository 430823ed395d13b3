//! The negotiated send size (`docs/PROTOCOL.md`, "Send size"): the smaller
//! offer wins, a 1 MiB write is one send when both sides allow it, an old
//! peer's 64 KiB still works, an absurd offer buys the peer nothing, and a
//! size the transport cannot carry is a typed error before any traffic.

use rdio::DEFAULT_MAX_SEND_SIZE;
use rdio::client::ClientError;
use rdio::embedded::{EmbeddedError, EmbeddedOptions, Inline, Mode, Threads};
use rdio::server::ServerError;
use rdio_core::wire::OpenFlags;
use std::fs;

const RWC: OpenFlags = OpenFlags::READ
    .union(OpenFlags::WRITE)
    .union(OpenFlags::CREATE);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Write 1 MiB with `options`: the negotiated send size and the messages
/// the server placed in the file (request plus fragments).
fn write_one_mib<M: Mode>(options: EmbeddedOptions) -> (u32, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = M::start(dir.path(), options).expect("start");
    let file = pair.client.open("w", RWC).expect("open");
    let data = pattern(1 << 20);
    pair.client.write_at(&file, 0, &data).expect("write");
    let negotiated = pair.client.negotiated().max_send_size;
    let placed = pair.server().stats().totals.writes;
    pair.client.close(file).expect("close");
    pair.finish().expect("finish");
    assert_eq!(fs::read(dir.path().join("w")).expect("read back"), data);
    (negotiated, placed)
}

#[test]
fn a_one_mib_write_is_one_send_by_default() {
    for (negotiated, placed) in [
        write_one_mib::<Inline>(EmbeddedOptions::default()),
        write_one_mib::<Threads>(EmbeddedOptions::default()),
    ] {
        assert_eq!(negotiated, DEFAULT_MAX_SEND_SIZE);
        assert_eq!(placed, 1, "one message, one pwrite");
    }
}

#[test]
fn an_old_peer_offering_64_kib_gets_64_kib_fragments() {
    // An old client against a new server, then a new client against an
    // old server: the smaller offer wins either way.
    let mut old_client = EmbeddedOptions::default();
    old_client.client.config.max_send_size = 64 << 10;
    let mut old_server = EmbeddedOptions::default();
    old_server.server.config.max_send_size = 64 << 10;
    for options in [old_client, old_server] {
        let (negotiated, placed) = write_one_mib::<Inline>(options);
        assert_eq!(negotiated, 64 << 10);
        // 1 MiB in messages of 64 KiB less a header: 17 of them.
        assert_eq!(placed, 17);
    }
}

#[test]
fn an_absurd_client_offer_gets_the_servers_limit() {
    let mut options = EmbeddedOptions::default();
    options.client.config.max_send_size = u32::MAX;
    options.loopback.max_message = usize::MAX;
    options.server.config.max_send_size = 256 << 10;
    let (negotiated, placed) = write_one_mib::<Inline>(options);
    assert_eq!(negotiated, 256 << 10);
    assert_eq!(placed, 5);
}

#[test]
fn a_send_size_the_transport_cannot_carry_is_a_typed_error() {
    let mut options = EmbeddedOptions::default();
    options.loopback.max_message = 1 << 20;
    // Both sides offer 1 MiB + 4 KiB: more than this loopback's 1 MiB.
    let dir = tempfile::tempdir().expect("tempdir");
    match Inline::start(dir.path(), options) {
        Err(EmbeddedError::Client(ClientError::SendSizeTooLarge {
            negotiated,
            transport,
        })) => {
            assert_eq!(negotiated, DEFAULT_MAX_SEND_SIZE);
            assert_eq!(transport, 1 << 20);
        }
        Err(EmbeddedError::Server(ServerError::SendSizeTooLarge {
            configured,
            transport,
        })) => {
            assert_eq!(configured, DEFAULT_MAX_SEND_SIZE);
            assert_eq!(transport, 1 << 20);
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("connected with sends the transport cannot carry"),
    }
}
