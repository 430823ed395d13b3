//! Core micro-benchmarks: encode/decode of messages, a full 4 KiB read cycle,
//! credit grant/revoke handling.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use rdio_core::credit::{ClientLedger, ServerLedger};
use rdio_core::wire::{Body, BufferDescriptor, Flags, Message, ReadRequest, Status, StatusBlock};

fn wire(c: &mut Criterion) {
    let read = Message {
        flags: Flags::INTERRUPT,
        credits: 32,
        request_id: 7,
        body: Body::Read(ReadRequest {
            handle: 1,
            offset: 4096,
            dest: BufferDescriptor::new(0x1000, 9, 4096),
            status: BufferDescriptor::new(0x9000, 9, 24),
        }),
    };
    let mut buf = [0u8; 128];
    let len = read.emit(&mut buf).expect("fits");
    c.bench_function("wire/read/emit", |b| {
        b.iter(|| black_box(&read).emit(black_box(&mut buf)))
    });
    c.bench_function("wire/read/parse", |b| {
        b.iter(|| Message::parse(black_box(&buf[..len])))
    });
    let block = StatusBlock {
        request_id: 7,
        status: Status::Success,
        bytes: 4096,
        credits: 1,
    };
    let bytes = block.to_bytes();
    c.bench_function("wire/status_block/emit", |b| {
        b.iter(|| black_box(&block).to_bytes())
    });
    c.bench_function("wire/status_block/parse", |b| {
        b.iter(|| StatusBlock::parse(black_box(&bytes)))
    });
}

fn cycle(c: &mut Criterion) {
    let mut cycle = rdio_benches::Cycle::new();
    c.bench_function("core/read_4k_cycle", |b| b.iter(|| cycle.read_4k()));
}

fn credits(c: &mut Criterion) {
    c.bench_function("credit/grant_revoke", |b| {
        b.iter(|| {
            let mut client = ClientLedger::new(8, 64);
            let mut server = ServerLedger::new(8);
            let _ = server.start(8);
            let _ = client.on_credit_request(8);
            if let Some((delta, level)) = client.send_ack() {
                let _ = server.on_ack(delta, level);
            }
            let _ = server.release(1);
            let _ = client.on_credit_response(1);
            let _ = server.start(-4);
            let _ = client.on_credit_request(-4);
            while let Some(level) = client.send_give_up() {
                let _ = server.on_give_up(level);
                let _ = client.on_credit_response(0);
            }
            black_box((client, server))
        })
    });
}

criterion_group!(benches, wire, cycle, credits);
criterion_main!(benches);
