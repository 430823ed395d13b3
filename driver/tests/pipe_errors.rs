//! The server's answers to malformed and unexpected side-channel frames
//! (issue #20): a pipe `Error` naming the code and the refused opcode, then
//! the pipe closes — except after an unknown opcode, whose frame is skipped
//! and the pipe read on (`docs/PROTOCOL.md`, "Error").

use rdio::files::Root;
use rdio::server::{Server, ServerOptions};
use rdio_core::wire::{PipeErrorCode, PipeMessage, ProviderName};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

fn server(dir: &std::path::Path) -> Arc<Server> {
    let provider = ProviderName::new("loopback").expect("provider");
    Server::new(
        Root::new(dir).expect("root"),
        ServerOptions::new(provider, b"loopback"),
    )
}

/// A pipe to a fresh handler thread, as raw bytes.
fn connect(server: &Arc<Server>) -> UnixStream {
    let (client, server_end) = UnixStream::pair().expect("socketpair");
    let handler = Arc::clone(server);
    std::thread::spawn(move || handler.serve_pipe(server_end));
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = b"RDIO".to_vec();
    bytes.extend_from_slice(&[1, opcode, 0, 0]);
    bytes.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Read one whole frame (header + payload); `None` at end of stream.
fn read_frame(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 12];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("read: {e}"),
    }
    let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
    let mut bytes = header.to_vec();
    bytes.resize(12 + len, 0);
    stream.read_exact(&mut bytes[12..]).expect("payload");
    Some(bytes)
}

fn expect_error(stream: &mut UnixStream, code: PipeErrorCode, opcode: u8) {
    let bytes = read_frame(stream).expect("an Error frame");
    assert_eq!(
        PipeMessage::parse(&bytes).map(|(m, _)| m),
        Ok(PipeMessage::Error { code, opcode })
    );
}

fn expect_closed(stream: &mut UnixStream) {
    assert_eq!(read_frame(stream), None, "the pipe stays open");
}

fn resume_key(stream: &mut UnixStream) {
    stream.write_all(&frame(1, &[])).expect("write");
    let bytes = read_frame(stream).expect("resume key response");
    assert_eq!(bytes[5], 2, "a ResumeKeyResponse");
}

#[test]
fn an_unknown_opcode_is_refused_and_the_pipe_reads_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path());
    let mut pipe = connect(&server);
    pipe.write_all(&frame(0x3f, b"extension payload"))
        .expect("write");
    expect_error(&mut pipe, PipeErrorCode::UNKNOWN_OPCODE, 0x3f);
    resume_key(&mut pipe);
}

#[test]
fn malformed_frames_are_refused_then_the_pipe_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path());

    // A provider name with a space (issue #20, divergence 2).
    let mut pipe = connect(&server);
    resume_key(&mut pipe);
    let mut payload = vec![0u8; 40];
    payload[22] = 1; // one provider
    payload[24..28].copy_from_slice(&4096u32.to_le_bytes());
    let mut name = [0u8; 32];
    name[..7].copy_from_slice(b"ofi tcp");
    payload.extend_from_slice(&name);
    pipe.write_all(&frame(5, &payload)).expect("write");
    expect_error(&mut pipe, PipeErrorCode::BAD_PROVIDER_NAME, 5);
    expect_closed(&mut pipe);

    // A complete frame shorter than its fixed part: not "read more".
    let mut pipe = connect(&server);
    pipe.write_all(&frame(2, &[0; 15])).expect("write");
    expect_error(&mut pipe, PipeErrorCode::BAD_LENGTH, 2);
    expect_closed(&mut pipe);

    // Not an rdio frame at all: the opcode is unknown (0). Exactly one
    // header's worth, so nothing is left unread when the server closes
    // (unread bytes would make the close a reset that may beat the Error).
    let mut pipe = connect(&server);
    pipe.write_all(b"GET / HTTP/1").expect("write");
    expect_error(&mut pipe, PipeErrorCode::BAD_MAGIC, 0);
    expect_closed(&mut pipe);
}

#[test]
fn messages_out_of_order_are_refused_then_the_pipe_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(dir.path());

    // ResumeKeyRequest comes first...
    let mut pipe = connect(&server);
    let mut open = vec![1, 0, 0, 0, 1, 0, 0, 0];
    open.push(b'f');
    pipe.write_all(&frame(3, &open)).expect("write");
    expect_error(&mut pipe, PipeErrorCode::UNEXPECTED_MESSAGE, 3);
    expect_closed(&mut pipe);

    // ...and only once.
    let mut pipe = connect(&server);
    resume_key(&mut pipe);
    pipe.write_all(&frame(1, &[])).expect("write");
    expect_error(&mut pipe, PipeErrorCode::UNEXPECTED_MESSAGE, 1);
    expect_closed(&mut pipe);

    // A server's message sent to the server.
    let mut pipe = connect(&server);
    resume_key(&mut pipe);
    pipe.write_all(&frame(2, &[0; 16])).expect("write");
    expect_error(&mut pipe, PipeErrorCode::UNEXPECTED_MESSAGE, 2);
    expect_closed(&mut pipe);
}
