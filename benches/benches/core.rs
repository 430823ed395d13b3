//! Core micro-benchmarks: encode/decode of messages, a full 4 KiB read cycle,
//! credit grant/revoke handling.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use rdio_core::credit::{ClientLedger, ServerLedger};
use rdio_core::wire::{Message, PipeMessage, StatusBlock};

/// One sample of every message, shared with the golden-vector tests.
#[path = "../../core/tests/wire_samples/mod.rs"]
#[allow(dead_code)] // the golden bytes and keys are the golden tests' business
mod wire_samples;

/// Encode and parse one sample of every RDMA-channel message, every side
/// channel (pipe) message and the status block.
fn wire(c: &mut Criterion) {
    let mut buf = vec![0u8; 4096];
    for sample in wire_samples::rdma() {
        let msg = sample.value;
        let len = msg.emit(&mut buf).expect("a sample fits 4 KiB");
        let bytes = buf[..len].to_vec();
        c.bench_function(&format!("wire/{}/emit", sample.name), |b| {
            b.iter(|| black_box(&msg).emit(black_box(&mut buf)))
        });
        c.bench_function(&format!("wire/{}/parse", sample.name), |b| {
            b.iter(|| Message::parse(black_box(&bytes)))
        });
    }
    for sample in wire_samples::pipe() {
        let msg = sample.value;
        let len = msg.emit(&mut buf).expect("a sample fits 4 KiB");
        let bytes = buf[..len].to_vec();
        c.bench_function(&format!("pipe/{}/emit", sample.name), |b| {
            b.iter(|| black_box(&msg).emit(black_box(&mut buf)))
        });
        c.bench_function(&format!("pipe/{}/parse", sample.name), |b| {
            b.iter(|| PipeMessage::parse(black_box(&bytes)))
        });
    }
    for sample in wire_samples::status() {
        let block = sample.value;
        let bytes = block.to_bytes();
        c.bench_function(&format!("wire/{}/emit", sample.name), |b| {
            b.iter(|| black_box(&block).to_bytes())
        });
        c.bench_function(&format!("wire/{}/parse", sample.name), |b| {
            b.iter(|| StatusBlock::parse(black_box(&bytes)))
        });
    }
}

fn cycle(c: &mut Criterion) {
    let mut cycle = rdio_benches::Cycle::new();
    c.bench_function("core/read_4k_cycle", |b| b.iter(|| cycle.read_4k()));
}

fn credits(c: &mut Criterion) {
    // Every input through `black_box`: with constants the optimiser could
    // work the whole exchange out at compile time.
    c.bench_function("credit/grant_revoke", |b| {
        b.iter(|| {
            let mut client = ClientLedger::new(black_box(8), black_box(64));
            let mut server = ServerLedger::new(black_box(8));
            let _ = server.start(black_box(8));
            let _ = client.on_credit_request(black_box(8));
            if let Some((delta, level)) = client.send_ack() {
                let _ = server.on_ack(delta, level);
            }
            let _ = server.release(black_box(1));
            let _ = client.on_credit_response(black_box(1));
            let _ = server.start(black_box(-4));
            let _ = client.on_credit_request(black_box(-4));
            while let Some(level) = client.send_give_up() {
                let _ = server.on_give_up(level);
                let _ = client.on_credit_response(black_box(0));
            }
            black_box((client, server))
        })
    });
}

criterion_group!(benches, wire, cycle, credits);
criterion_main!(benches);
