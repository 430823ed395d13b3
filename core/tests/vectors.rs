//! `docs/vectors/golden.json`: every golden vector of `docs/PROTOCOL.md`
//! as machine-readable JSON (name, hex, header and decoded fields), for
//! implementations in any language. This test renders the JSON from the
//! Rust samples (`wire_samples`) and requires the file to be identical, so
//! the two cannot drift; `RDIO_BLESS_VECTORS=1 cargo test -p rdio-core
//! --test vectors` rewrites the file after a deliberate change.
//!
//! It also checks the session transcripts (`docs/vectors/session-*.json`,
//! recorded by `rdio conformance --transcript`): every message in them
//! parses, and its recorded fields are what the bytes say.

mod wire_samples;

use rdio_core::wire::{
    Attributes, Body, BufferDescriptor, FileMessage, Message, PipeMessage, ProviderList,
    StatusBlock,
};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors"))
}

fn descriptor(d: BufferDescriptor) -> Value {
    json!({ "addr": d.addr(), "key": d.key(), "len": d.len() })
}

fn providers(list: &ProviderList) -> Value {
    list.iter().map(|p| p.as_str()).collect()
}

/// The fields of an RDMA message's payload, named as in PROTOCOL.md.
pub fn body_fields(body: &Body<'_>) -> Value {
    match *body {
        Body::AuthRequest { key } => json!({ "key": hex(&key.0) }),
        Body::AuthResponse { status } => json!({ "status": format!("{status:?}") }),
        Body::StatusResponse {
            status,
            credits,
            keepalive_ms,
        } => {
            json!({ "status": format!("{status:?}"), "credits": credits, "keepalive_ms": keepalive_ms })
        }
        Body::CreditRequest { delta } | Body::CreditAck { delta } => json!({ "delta": delta }),
        Body::RegisterFile { key } => json!({ "key": hex(&key.0) }),
        Body::RegisterFileCompletion {
            status,
            handle,
            size,
        } => json!({ "status": format!("{status:?}"), "handle": handle, "size": size }),
        Body::Read(r) => json!({
            "handle": r.handle, "offset": r.offset,
            "dest": descriptor(r.dest), "status": descriptor(r.status),
        }),
        Body::ReadV(r) => json!({
            "handle": r.handle, "count": r.segments.len(), "status": descriptor(r.status),
            "segments": r.segments.iter()
                .map(|s| json!({ "offset": s.offset(), "dest": descriptor(s.dest()) }))
                .collect::<Vec<_>>(),
        }),
        Body::ReadBatch(b) => json!({
            "count": b.reads.len(),
            "reads": b.reads.iter()
                .map(|r| json!({
                    "request_id": r.request_id(), "handle": r.handle(), "offset": r.offset(),
                    "dest": descriptor(r.dest()), "status": descriptor(r.status()),
                }))
                .collect::<Vec<_>>(),
        }),
        Body::Write(w) => json!({
            "handle": w.handle, "total_len": w.total_len, "offset": w.offset,
            "status": descriptor(w.status), "data": hex(w.data),
        }),
        Body::WriteV(w) => json!({
            "handle": w.handle, "count": w.segments.len(), "total_len": w.total_len,
            "status": descriptor(w.status),
            "segments": w.segments.iter()
                .map(|s| json!({ "offset": s.offset(), "len": s.len() }))
                .collect::<Vec<_>>(),
            "data": hex(w.data),
        }),
        Body::WriteData { data_offset, data } => {
            json!({ "data_offset": data_offset, "data": hex(data) })
        }
        Body::Cancel { target } => json!({ "target": target }),
        Body::Close { handle } => json!({ "handle": handle }),
        Body::Completion { status, bytes } => {
            json!({ "status": format!("{status:?}"), "bytes": bytes })
        }
        Body::Terminate { reason } => json!({ "reason": format!("{reason:?}") }),
        _ => json!({}),
    }
}

/// An RDMA message: header and fields.
pub fn rdma_json(message: &Message<'_>, bytes: &[u8]) -> Value {
    json!({
        "header": {
            "version": 1,
            "opcode": bytes[1],
            "opcode_name": format!("{:?}", message.opcode()),
            "flags": message.flags.bits(),
            "credits": message.credits,
            "demand": message.demand,
            "request_id": message.request_id,
            "length": bytes.len() - 16,
        },
        "fields": body_fields(&message.body),
    })
}

/// A pipe message: header and fields.
pub fn pipe_json(message: &PipeMessage<'_>, bytes: &[u8]) -> Value {
    let fields = match message {
        PipeMessage::ResumeKeyResponse { key } => json!({ "key": hex(&key.0) }),
        PipeMessage::OpenRequest { flags, path } => json!({
            "flags": flags.bits(), "path_len": path.len(),
            "path": String::from_utf8_lossy(path),
        }),
        PipeMessage::OpenResponse { status, key, size } => json!({
            "status": format!("{status:?}"), "key": hex(&key.0), "size": size,
        }),
        PipeMessage::NegotiateRequest(r) => json!({
            "server_key": hex(&r.server_key.0), "min_version": r.min_version,
            "max_version": r.max_version, "credits_requested": r.credits_requested,
            "provider_count": r.providers.len(), "max_send_size": r.max_send_size,
            "max_io_size": r.max_io_size, "capabilities": format!("{:#018x}", r.capabilities.0),
            "providers": providers(&r.providers),
        }),
        PipeMessage::NegotiateResponse(r) => json!({
            "status": format!("{:?}", r.status), "version": r.version, "credits": r.credits,
            "max_send_size": r.max_send_size, "max_io_size": r.max_io_size,
            "auth_key": hex(&r.auth_key.0), "provider_count": r.providers.len(),
            "endpoint_len": r.endpoint.len(),
            "capabilities": format!("{:#018x}", r.capabilities.0),
            "providers": providers(&r.providers),
            "endpoint": String::from_utf8_lossy(r.endpoint),
        }),
        PipeMessage::Error { code, opcode } => json!({ "code": code.0, "opcode": opcode }),
        PipeMessage::File(message) => file_json(message),
        PipeMessage::ChecksumRequest { algorithm, path } => json!({
            "algorithm": algorithm.0, "path_len": path.len(),
            "path": String::from_utf8_lossy(path),
        }),
        PipeMessage::ChecksumResponse {
            status,
            algorithm,
            length,
            digest,
        } => json!({
            "status": format!("{status:?}"), "algorithm": algorithm.0, "length": length,
            "digest": hex(digest),
        }),
        _ => json!({}),
    };
    json!({
        "header": { "magic": "RDIO", "version": 1, "opcode": bytes[5], "length": bytes.len() - 12 },
        "fields": fields,
    })
}

fn attributes_json(a: &Attributes) -> Value {
    json!({
        "kind": a.kind.as_str(), "mode": format!("{:04o}", a.mode), "size": a.size,
        "modified_ns": a.modified_ns, "file_id": a.file_id,
    })
}

/// A remote file operation's fields.
fn file_json(message: &FileMessage<'_>) -> Value {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match message {
        FileMessage::ListRequest { path, after } => {
            json!({ "path": text(path), "after": text(after) })
        }
        FileMessage::ListResponse {
            status,
            end,
            entries,
        } => json!({
            "status": format!("{status:?}"), "count": entries.len(), "end": end,
            "entries": entries.iter().map(|e| {
                let mut value = attributes_json(&e.attributes);
                value["name"] = text(e.name).into();
                value
            }).collect::<Vec<_>>(),
        }),
        FileMessage::InfoRequest { path } => json!({ "path": text(path) }),
        FileMessage::InfoResponse { status, attributes } => json!({
            "status": format!("{status:?}"), "attributes": attributes_json(attributes),
        }),
        FileMessage::RemoveRequest { flags, path } => {
            json!({ "flags": flags.bits(), "path": text(path) })
        }
        FileMessage::MakeDirRequest { flags, mode, path } => json!({
            "flags": flags.bits(), "mode": format!("{mode:04o}"), "path": text(path),
        }),
        FileMessage::RenameRequest { flags, from, to } => json!({
            "flags": flags.bits(), "from": text(from), "to": text(to),
        }),
        FileMessage::SetAttrRequest {
            flags,
            mode,
            modified_ns,
            path,
        } => json!({
            "flags": flags.bits(), "mode": format!("{mode:04o}"),
            "modified_ns": modified_ns, "path": text(path),
        }),
        FileMessage::HashRequest {
            path,
            offset,
            length,
        } => {
            json!({ "path": text(path), "offset": offset, "length": length, "algorithm": "sha256" })
        }
        FileMessage::HashResponse {
            status,
            length,
            digest,
        } => json!({
            "status": format!("{status:?}"), "length": length, "algorithm": "sha256",
            "digest": hex(digest),
        }),
        FileMessage::OpResult { status, opcode } => {
            json!({ "status": format!("{status:?}"), "opcode": opcode })
        }
        _ => json!({}),
    }
}

fn status_json(block: &StatusBlock) -> Value {
    json!({
        "fields": {
            "request_id": block.request_id, "status": format!("{:?}", block.status),
            "bytes": block.bytes, "credits": block.credits, "valid": "RDIO",
        }
    })
}

fn with(mut value: Value, name: &str, channel: &str, bytes: &[u8]) -> Value {
    let object = value.as_object_mut().expect("object");
    object.insert("name".into(), name.into());
    object.insert("channel".into(), channel.into());
    object.insert("hex".into(), hex(bytes).into());
    value
}

fn golden_json() -> String {
    let mut vectors = Vec::new();
    for sample in wire_samples::rdma() {
        let bytes = unhex(sample.golden);
        vectors.push(with(
            rdma_json(&sample.value, &bytes),
            sample.name,
            "rdma",
            &bytes,
        ));
    }
    for sample in wire_samples::pipe() {
        let bytes = unhex(sample.golden);
        vectors.push(with(
            pipe_json(&sample.value, &bytes),
            sample.name,
            "pipe",
            &bytes,
        ));
    }
    for sample in wire_samples::status() {
        let bytes = unhex(sample.golden);
        vectors.push(with(
            status_json(&sample.value),
            sample.name,
            "status_block",
            &bytes,
        ));
    }
    let document = json!({
        "description": "rdio golden vectors (docs/PROTOCOL.md, Wire format): every message encoded with fixed field values. All integers little-endian; hex is the exact bytes; rdma messages carry the 16-byte RDMA header, pipe messages the 12-byte frame header, the status block is the 24 bytes RDMA-written into client memory.",
        "version": 1,
        "vectors": vectors,
    });
    let mut text = serde_json::to_string_pretty(&document).expect("json");
    text.push('\n');
    text
}

#[test]
fn golden_json_matches_the_rust_samples() {
    let path = vectors_dir().join("golden.json");
    let expected = golden_json();
    if std::env::var_os("RDIO_BLESS_VECTORS").is_some() {
        std::fs::create_dir_all(vectors_dir()).expect("mkdir");
        std::fs::write(&path, &expected).expect("write");
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == expected,
        "docs/vectors/golden.json differs from core/tests/wire_samples \
         (RDIO_BLESS_VECTORS=1 cargo test -p rdio-core --test vectors rewrites it)"
    );
}

/// Every message of a recorded session parses, and the recorded header
/// and fields are what its bytes say.
#[test]
fn session_transcripts_parse_and_match_their_fields() {
    for transport in ["fabric", "cma"] {
        let path = vectors_dir().join(format!("session-{transport}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut document: Value = serde_json::from_str(&text).expect("valid JSON");
        if std::env::var_os("RDIO_BLESS_VECTORS").is_some() {
            // Add the decoded header and fields to a freshly recorded
            // transcript (`rdio conformance --transcript` writes bytes only).
            for entry in document["transcript"].as_array_mut().expect("transcript") {
                let bytes = unhex(entry["hex"].as_str().expect("hex"));
                let decoded = match entry["channel"].as_str().expect("channel") {
                    "pipe" => PipeMessage::parse(&bytes)
                        .ok()
                        .map(|(m, _)| pipe_json(&m, &bytes)),
                    "rdma" => Message::parse(&bytes).ok().map(|m| rdma_json(&m, &bytes)),
                    "status_block" => StatusBlock::parse(&bytes)
                        .ok()
                        .flatten()
                        .map(|b| status_json(&b)),
                    _ => None,
                };
                let object = entry.as_object_mut().expect("entry object");
                for key in ["header", "fields"] {
                    match decoded.as_ref().and_then(|d| d.get(key)) {
                        Some(value) => object.insert(key.into(), value.clone()),
                        None => object.remove(key),
                    };
                }
            }
            let mut text = serde_json::to_string_pretty(&document).expect("json");
            text.push('\n');
            std::fs::write(&path, text).expect("write");
        }
        let entries = document["transcript"].as_array().expect("transcript array");
        let mut channels = std::collections::BTreeSet::new();
        for (index, entry) in entries.iter().enumerate() {
            let bytes = unhex(entry["hex"].as_str().expect("hex"));
            let channel = entry["channel"].as_str().expect("channel");
            channels.insert(channel.to_owned());
            let decoded = match channel {
                "pipe" => {
                    let (message, used) = PipeMessage::parse(&bytes)
                        .unwrap_or_else(|e| panic!("{transport} entry {index}: {e}"));
                    assert_eq!(used, bytes.len(), "{transport} entry {index}");
                    pipe_json(&message, &bytes)
                }
                "rdma" => {
                    let message = Message::parse(&bytes)
                        .unwrap_or_else(|e| panic!("{transport} entry {index}: {e}"));
                    rdma_json(&message, &bytes)
                }
                "status_block" => {
                    let block = StatusBlock::parse(&bytes)
                        .unwrap_or_else(|e| panic!("{transport} entry {index}: {e}"))
                        .expect("a written block");
                    status_json(&block)
                }
                "rdma_write" => continue,
                other => panic!("{transport} entry {index}: unknown channel {other}"),
            };
            assert_eq!(
                entry["fields"], decoded["fields"],
                "{transport} entry {index} fields"
            );
            if decoded.get("header").is_some() {
                assert_eq!(
                    entry["header"], decoded["header"],
                    "{transport} entry {index} header"
                );
            }
        }
        for channel in ["pipe", "rdma", "status_block", "rdma_write"] {
            assert!(
                channels.contains(channel),
                "{transport}: no {channel} entry"
            );
        }
    }
}
