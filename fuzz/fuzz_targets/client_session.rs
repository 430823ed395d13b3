//! A hostile server: arbitrary bytes fed to an authenticated `Client` with
//! requests outstanding, as received sends and as status blocks written into
//! its requests' memory, interleaved with arbitrary API calls. Never a
//! panic; every send the client posts parses, goes the client's way and
//! carries its ledger level; its ledger never uses more credits than it
//! holds; every request is reported at most once, and all of them exactly
//! once after the connection ends.
//!
//! Input: records of `[control, len, bytes...]`; `control & 3` picks a
//! received send (optionally patched: length field, request id of an
//! outstanding request, credits 1), a status block for an outstanding
//! request (optionally with its valid word and id set, or the id of the
//! same slot's next generation, which must never complete anything; taken
//! through `handle_status_block` and the events, or through
//! `take_status_block`, which hands the completion back), an API call, or
//! posting the client's sends / advancing time. The session granted read
//! batches: reads queued together go as one `ReadBatch`, and an immediate
//! naming its first read takes every read's block.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdio_core::client::{BlockOutcome, ClientEvent, CompletionMode, RequestId};
use rdio_core::wire::{Message, OpenFlags, WriteSegment};
use rdio_proptests::pair::{Pair, ServerSend, event_request};
use rdio_proptests::session::configs;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

/// The pair's client slots (`Pair::client` is a `Client<64>`).
const SLOTS: u32 = 64;

struct Harness {
    pair: Pair,
    handle: u32,
    submitted: BTreeSet<RequestId>,
    reported: HashSet<RequestId>,
}

impl Harness {
    fn new() -> Self {
        let (server, mut client) = configs();
        // Reads queued together go as read batches, so an immediate may
        // name a batch (its members' blocks taken with `take_batch_block`).
        client.capabilities = rdio_core::wire::Capabilities::READ_BATCH;
        let mut pair = Pair::new(server, client).authenticated();
        let key = pair.open_file(vec![1; 4096], OpenFlags::READ | OpenFlags::WRITE);
        let handle = pair.register(key);
        let mut harness = Self {
            pair,
            handle,
            submitted: BTreeSet::new(),
            reported: HashSet::new(),
        };
        harness.api(0, 0, 100);
        harness.api(1, 50, 3000);
        harness.api(2, 0, 1500);
        harness.api(5, 0, 0);
        harness.transmit();
        harness
    }

    fn mode(selector: u8) -> CompletionMode {
        if selector & 1 == 0 {
            CompletionMode::Interrupt
        } else {
            CompletionMode::Polling
        }
    }

    /// One API call; refusals are fine, panics are not.
    fn api(&mut self, selector: u8, offset: u16, len: u16) {
        let len = 1 + usize::from(len % 4000);
        let offset = u64::from(offset);
        let pair = &mut self.pair;
        let mode = Self::mode(selector >> 4);
        let result = match selector % 7 {
            0 | 1 => {
                let dest = pair.memory.alloc(len);
                let status = pair.status_desc();
                let r = pair.client.read(self.handle, offset, dest, status, mode);
                if let Ok(r) = r {
                    pair.track(r, status, mode);
                }
                r
            }
            2 | 3 => {
                let status = pair.status_desc();
                let segments = [
                    WriteSegment::new(offset, len as u32),
                    WriteSegment::new(9000, len as u32),
                ];
                let collapse = selector & 8 != 0;
                let r = if selector % 7 == 2 {
                    pair.client
                        .write(self.handle, offset, len as u32, status, mode)
                } else {
                    pair.client
                        .write_vectored(self.handle, &segments, collapse, status, mode)
                };
                if let Ok(r) = r {
                    pair.track(r, status, mode);
                    let total = if selector % 7 == 3 && !collapse {
                        2 * len
                    } else {
                        len
                    };
                    pair.write_data.insert(r, vec![selector; total]);
                }
                r
            }
            4 => {
                if let Some(&target) = self
                    .submitted
                    .iter()
                    .nth(usize::from(len as u16) % self.submitted.len().max(1))
                {
                    let _ = pair.client.cancel(target);
                }
                return;
            }
            5 => pair.client.request_interrupt(),
            _ => pair.client.close(self.handle),
        };
        if let Ok(request) = result {
            assert!(self.submitted.insert(request), "request id reused");
            assert!(!self.reported.contains(&request), "request id reused");
        }
    }

    /// Post the client's sends (to nowhere), checking each.
    fn transmit(&mut self) {
        while let Some(bytes) = self.pair.client_transmit_one() {
            let msg = Message::parse(&bytes).expect("client sent an unparsable message");
            assert!(
                msg.opcode().sent_by_client(),
                "client sent {:?}",
                msg.opcode()
            );
            if !matches!(msg.body, rdio_core::wire::Body::Terminate { .. }) {
                assert_eq!(
                    msg.credits,
                    self.pair.client.ledger().level(),
                    "header credits"
                );
            }
        }
        self.pair.c2s.clear();
    }

    fn outstanding(&self, pick: u8) -> Option<RequestId> {
        let open: Vec<_> = self
            .submitted
            .iter()
            .filter(|r| !self.reported.contains(r))
            .collect();
        (!open.is_empty()).then(|| *open[usize::from(pick) % open.len()])
    }

    fn events(&mut self) {
        self.pair.client_events();
        for event in std::mem::take(&mut self.pair.events) {
            if let Some(request) = event_request(&event) {
                assert!(
                    self.submitted.contains(&request),
                    "event for an unknown request: {event:?}"
                );
                assert!(self.reported.insert(request), "reported twice: {event:?}");
            } else {
                assert!(matches!(event, ClientEvent::Terminated { .. }), "{event:?}");
            }
        }
        let ledger = self.pair.client.ledger();
        assert!(ledger.in_use() <= ledger.level(), "{ledger:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    let mut input = data;
    while let [control, len, rest @ ..] = input {
        let len = usize::from(*len).min(rest.len());
        let (chunk, next) = rest.split_at(len);
        input = next;
        match control & 3 {
            0 => {
                let mut msg = chunk.to_vec();
                if msg.len() >= 16 {
                    if control & 4 != 0 {
                        let payload = (msg.len() - 16) as u32;
                        msg[12..16].copy_from_slice(&payload.to_le_bytes());
                    }
                    if control & 8 != 0
                        && let Some(RequestId(id)) = h.outstanding(msg[8])
                    {
                        msg[8..12].copy_from_slice(&id.to_le_bytes());
                    }
                    if control & 16 != 0 {
                        msg[4..6].copy_from_slice(&1u16.to_le_bytes());
                    }
                }
                h.pair.s2c.push_back(ServerSend::Message(msg));
                h.pair.client_receive_one();
            }
            1 => {
                let Some(request) = h.outstanding(control >> 2) else {
                    continue;
                };
                let Some(&desc) = h.pair.status_descs.get(&request) else {
                    continue;
                };
                let mut block = [0u8; 24];
                let n = chunk.len().min(24);
                block[..n].copy_from_slice(&chunk[..n]);
                if control & 4 != 0 {
                    block[20..24].copy_from_slice(b"RDIO");
                }
                if control & 8 != 0 {
                    block[0..4].copy_from_slice(&request.0.to_le_bytes());
                }
                // The same slot's next generation: an id never given out
                // while this request holds the slot.
                let forged = control & 64 != 0;
                if forged {
                    let id = request.0.wrapping_add(SLOTS);
                    block[0..4].copy_from_slice(&id.to_le_bytes());
                }
                if let Some(slot) = h.pair.memory.slot(desc, 24) {
                    slot.copy_from_slice(&block);
                }
                if control & 32 != 0 {
                    // The one-pass path: the completion comes back here.
                    match h.pair.client.take_status_block(h.pair.now, &block) {
                        Ok(BlockOutcome::Completed(event)) => {
                            assert!(!forged, "a forged id completed {event:?}");
                            h.pair.events.push(event);
                        }
                        Ok(BlockOutcome::NotWritten | BlockOutcome::Taken) | Err(_) => {}
                    }
                } else if control & 16 != 0 {
                    h.pair.s2c.push_back(ServerSend::Immediate(request.0));
                    h.pair.client_receive_one();
                } else {
                    h.pair.client_poll();
                }
            }
            2 => {
                let offset = chunk.first().map_or(0, |&b| u16::from(b) * 64);
                let len = chunk.get(1).map_or(0, |&b| u16::from(b) * 16);
                h.api(control >> 2, offset, len);
            }
            _ => {
                if control & 4 != 0 {
                    let seconds = chunk.first().copied().unwrap_or(1);
                    h.pair.advance(Duration::from_secs(u64::from(seconds)));
                }
                h.transmit();
            }
        }
        h.events();
    }
    // However it ended, every request is reported exactly once.
    h.pair.client.close_connection();
    h.transmit();
    h.events();
    let missing: Vec<_> = h
        .submitted
        .iter()
        .filter(|r| !h.reported.contains(r))
        .collect();
    assert!(missing.is_empty(), "never reported: {missing:?}");
});
