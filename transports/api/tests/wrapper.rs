//! Every wrapper forwards every `Transport` call it does not change,
//! defaulted ones (`register_external`) included: counted through a
//! recording inner transport.

use core::time::Duration;

use rdio_transport::{
    Access, Caps, Completion, CompletionKind, FaultConfig, FaultInjector, RegionId, RemoteBuf,
    Slice, Tracer, Transport, TransportError, TransportWrapper, WrId,
};

/// The calls of [`Transport`], in declaration order.
const CALLS: [&str; 17] = [
    "provider",
    "caps",
    "register",
    "register_external",
    "deregister",
    "region",
    "region_mut",
    "remote_buf",
    "post_recv",
    "post_send",
    "post_write",
    "post_send_inline",
    "post_write_inline",
    "flush",
    "poll_completions",
    "wait",
    "disconnect",
];

const CAPS: Caps = Caps {
    max_message: 4096,
    max_write: 4096,
    max_sge: 2,
    max_recv: 8,
    max_send: 8,
    pins_registrations: false,
    max_inline: 64,
    deferred_posts: false,
};

const REMOTE: RemoteBuf = RemoteBuf {
    addr: 0x1000,
    key: 42,
    len: 16,
};

/// Counts every call and answers with recognisable values.
#[derive(Debug, Default)]
struct Recorder {
    calls: [u32; CALLS.len()],
    bytes: [u8; 16],
    delivered: bool,
}

impl Recorder {
    fn count(&mut self, call: &str) {
        let index = CALLS.iter().position(|c| *c == call).expect("a call");
        self.calls[index] += 1;
    }
}

/// `&self` calls cannot count into `calls`; they count through this.
struct Shared {
    recorder: Recorder,
    reads: std::cell::Cell<[u32; 3]>,
}

impl Shared {
    fn new() -> Self {
        Self {
            recorder: Recorder::default(),
            reads: std::cell::Cell::new([0; 3]),
        }
    }

    fn read(&self, index: usize) {
        let mut reads = self.reads.get();
        reads[index] += 1;
        self.reads.set(reads);
    }

    /// Calls per name, `&self` ones included.
    fn calls(&self) -> Vec<(&'static str, u32)> {
        let reads = self.reads.get();
        CALLS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let extra = match *name {
                    "provider" => reads[0],
                    "caps" => reads[1],
                    "region" | "remote_buf" => reads[2],
                    _ => 0,
                };
                (*name, self.recorder.calls[i] + extra)
            })
            .collect()
    }
}

impl Transport for Shared {
    fn provider(&self) -> &str {
        self.read(0);
        "recorder"
    }

    fn caps(&self) -> Caps {
        self.read(1);
        CAPS
    }

    fn register(&mut self, _len: usize, _access: Access) -> Result<RegionId, TransportError> {
        self.recorder.count("register");
        Ok(RegionId(7))
    }

    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        drop(memory);
        self.recorder.count("register_external");
        Ok(RegionId(8))
    }

    fn deregister(&mut self, _region: RegionId) -> Result<(), TransportError> {
        self.recorder.count("deregister");
        Ok(())
    }

    fn region(&self, _region: RegionId) -> Result<&[u8], TransportError> {
        // `region` and `remote_buf` share a counter: each is called once,
        // so the pair must add up to two.
        self.read(2);
        Ok(&self.recorder.bytes)
    }

    fn region_mut(&mut self, _region: RegionId) -> Result<&mut [u8], TransportError> {
        self.recorder.count("region_mut");
        Ok(&mut self.recorder.bytes)
    }

    fn remote_buf(
        &self,
        _region: RegionId,
        _offset: usize,
        _len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        self.read(2);
        Ok(REMOTE)
    }

    fn post_recv(&mut self, _wr_id: WrId, _buf: Slice) -> Result<(), TransportError> {
        self.recorder.count("post_recv");
        Ok(())
    }

    fn post_send(
        &mut self,
        _wr_id: WrId,
        _sges: &[Slice],
        _imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.recorder.count("post_send");
        Ok(())
    }

    fn post_write(
        &mut self,
        _wr_id: WrId,
        _sges: &[Slice],
        _dst: RemoteBuf,
        _imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.recorder.count("post_write");
        Ok(())
    }

    fn post_send_inline(&mut self, _wr_id: WrId, _data: &[u8]) -> Result<(), TransportError> {
        self.recorder.count("post_send_inline");
        Ok(())
    }

    fn post_write_inline(
        &mut self,
        _wr_id: WrId,
        _data: &[u8],
        _dst: RemoteBuf,
        _imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.recorder.count("post_write_inline");
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        self.recorder.count("flush");
        Ok(())
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        self.recorder.count("poll_completions");
        // One completion in all, so a wrapper that drains in a loop ends.
        let Some(first) = out.first_mut().filter(|_| !self.recorder.delivered) else {
            return Ok(0);
        };
        self.recorder.delivered = true;
        *first = Completion {
            wr_id: 99,
            kind: CompletionKind::Send,
            status: Ok(()),
        };
        Ok(1)
    }

    fn wait(&mut self, _timeout: Option<Duration>) -> Result<(), TransportError> {
        self.recorder.count("wait");
        Ok(())
    }

    fn disconnect(&mut self) {
        self.recorder.count("disconnect");
    }
}

/// A wrapper that changes nothing: it writes no call at all.
struct Bare<T>(T);

impl<T: Transport> TransportWrapper for Bare<T> {
    type Inner = T;
    fn inner(&self) -> &T {
        &self.0
    }
    fn inner_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Every `Transport` call once, checking that the inner transport's
/// answers come back unchanged.
fn call_everything<T: Transport>(t: &mut T) {
    assert_eq!(t.provider(), "recorder");
    assert_eq!(t.caps(), CAPS);
    assert_eq!(t.register(16, Access::LOCAL_WRITE), Ok(RegionId(7)));
    assert_eq!(t.register_external(vec![1u8; 4]), Ok(RegionId(8)));
    assert_eq!(t.deregister(RegionId(7)), Ok(()));
    assert_eq!(t.region(RegionId(7)).map(<[u8]>::len), Ok(16));
    assert_eq!(t.region_mut(RegionId(7)).map(|b| b.len()), Ok(16));
    assert_eq!(t.remote_buf(RegionId(7), 0, 16), Ok(REMOTE));
    let slice = Slice::whole(RegionId(7), 16);
    assert_eq!(t.post_recv(1, slice), Ok(()));
    assert_eq!(t.post_send(2, &[slice], None), Ok(()));
    assert_eq!(t.post_write(3, &[slice], REMOTE, Some(5)), Ok(()));
    assert_eq!(t.post_send_inline(4, &[1, 2, 3]), Ok(()));
    assert_eq!(t.post_write_inline(5, &[4; 8], REMOTE, Some(6)), Ok(()));
    assert_eq!(t.flush(), Ok(()));
    let mut out = [Completion {
        wr_id: 0,
        kind: CompletionKind::Write,
        status: Ok(()),
    }; 4];
    assert_eq!(t.poll_completions(&mut out), Ok(1));
    assert_eq!(out[0].wr_id, 99);
    assert_eq!(t.wait(Some(Duration::ZERO)), Ok(()));
    t.disconnect();
}

/// Each call reached `inner` once; `polled_until_empty`: a wrapper that
/// drains the inner transport until it has nothing more polls it again.
fn assert_each_once(inner: &Shared, wrapper: &str, polled_until_empty: bool) {
    for (call, count) in inner.calls() {
        let expected = match call {
            "region" | "remote_buf" => 2,
            "poll_completions" if polled_until_empty => 2,
            _ => 1,
        };
        assert_eq!(
            count, expected,
            "{wrapper}: {call} reached the inner transport {count} times"
        );
    }
}

#[test]
fn a_wrapper_that_overrides_nothing_forwards_every_call() {
    let mut bare = Bare(Shared::new());
    call_everything(&mut bare);
    assert_each_once(&bare.0, "Bare", false);
}

#[test]
fn wrappers_of_wrappers_forward_every_call() {
    let mut nested = Bare(Bare(Shared::new()));
    call_everything(&mut nested);
    assert_each_once(&(nested.0).0, "Bare<Bare>", false);
}

#[test]
fn the_tracer_forwards_every_call() {
    let events = std::cell::Cell::new(0);
    let mut tracer = Tracer::new(Shared::new(), |_| events.set(events.get() + 1));
    call_everything(&mut tracer);
    assert_each_once(tracer.get_ref(), "Tracer", false);
    // Five posts, one completion, one disconnect.
    assert_eq!(events.get(), 7);
}

#[test]
fn a_fault_injector_without_faults_forwards_every_call() {
    let mut injector: FaultInjector<Shared> =
        FaultInjector::new(Shared::new(), FaultConfig::new(1));
    call_everything(&mut injector);
    assert_each_once(injector.get_ref(), "FaultInjector", true);
}

/// A fault injector holding back a delayed completion answers `wait` at
/// once (the completion becomes due by polling) — and still hands on what
/// was posted before it, as every `wait` promises: a transport that defers
/// posts (cma) would otherwise sit on them.
#[test]
fn a_fault_injector_holding_a_completion_flushes_in_wait() {
    let mut config = FaultConfig::new(1);
    config.delay_pct = 100;
    config.delay_polls = 5;
    let mut injector: FaultInjector<Shared> = FaultInjector::new(Shared::new(), config);
    let slice = Slice::whole(RegionId(7), 16);
    let mut out = [Completion {
        wr_id: 0,
        kind: CompletionKind::Write,
        status: Ok(()),
    }; 1];
    assert_eq!(
        Transport::poll_completions(&mut injector, &mut out),
        Ok(0),
        "held back"
    );
    assert_eq!(
        Transport::post_send(&mut injector, 2, &[slice], None),
        Ok(())
    );
    assert_eq!(
        Transport::wait(&mut injector, None),
        Ok(()),
        "returns at once"
    );
    let count = |name| {
        injector
            .get_ref()
            .calls()
            .into_iter()
            .find(|(call, _)| *call == name)
            .map(|(_, n)| n)
    };
    assert_eq!(count("wait"), Some(0), "the inner transport did not sleep");
    assert_eq!(count("flush"), Some(1), "but was flushed");
}
