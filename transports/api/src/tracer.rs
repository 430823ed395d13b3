//! A transport wrapper that reports every post and every completion to a
//! callback, after smoltcp's `phy::Tracer`.
//!
//! The callback sees work request ids, lengths and statuses, never payload
//! bytes: traces of a file server must not leak file contents, and formatting
//! is the callback's business (log, `defmt`, a test's `Vec`).

use crate::{
    Completion, RemoteBuf, Slice, Transport, TransportError, TransportWrapper, WrId, total_len,
};

/// Which verb a [`TraceEvent::Post`] was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostKind {
    /// [`Transport::post_recv`].
    Recv,
    /// [`Transport::post_send`].
    Send {
        /// Immediate data, if any.
        imm: Option<u32>,
    },
    /// [`Transport::post_write`].
    Write {
        /// The peer window written to.
        dst: RemoteBuf,
        /// Immediate data, if any.
        imm: Option<u32>,
    },
    /// [`Transport::post_write_tail_unsignaled`]: a write without immediate
    /// whose success has no completion.
    WriteUnsignaled {
        /// The peer window written to.
        dst: RemoteBuf,
    },
}

/// One observed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A work request was posted (or refused: see `result`).
    Post {
        /// The verb.
        kind: PostKind,
        /// The caller's work request id.
        wr_id: WrId,
        /// Total bytes of the scatter/gather list (saturating), or of the
        /// inline data.
        len: usize,
        /// Number of scatter/gather elements; 0 for inline data
        /// ([`Transport::post_send_inline`], [`Transport::post_write_inline`]).
        sges: usize,
        /// What the wrapped transport answered.
        result: Result<(), TransportError>,
    },
    /// A completion was drained.
    Completion(Completion),
    /// [`Transport::disconnect`] was called.
    Disconnect,
}

/// Wraps a transport `T` and calls `trace` for every post and completion.
#[derive(Debug)]
pub struct Tracer<T, F> {
    inner: T,
    trace: F,
}

impl<T: Transport, F: FnMut(TraceEvent)> Tracer<T, F> {
    /// Trace `inner` through `trace`.
    pub const fn new(inner: T, trace: F) -> Self {
        Self { inner, trace }
    }

    /// The wrapped transport.
    pub const fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped transport, mutably (calls made through it are not traced).
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwrap.
    pub fn into_inner(self) -> T {
        self.inner
    }

    fn post(
        &mut self,
        kind: PostKind,
        wr_id: WrId,
        sges: &[Slice],
        result: Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        let len = total_len(sges).unwrap_or(usize::MAX);
        (self.trace)(TraceEvent::Post {
            kind,
            wr_id,
            len,
            sges: sges.len(),
            result,
        });
        result
    }
}

impl<T: Transport, F: FnMut(TraceEvent)> Tracer<T, F> {
    fn post_inline(
        &mut self,
        kind: PostKind,
        wr_id: WrId,
        len: usize,
        result: Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        (self.trace)(TraceEvent::Post {
            kind,
            wr_id,
            len,
            sges: 0,
            result,
        });
        result
    }

    /// Trace a write of `sges` followed by `tail`.
    fn post_tail(
        &mut self,
        kind: PostKind,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        result: Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        let len = total_len(sges)
            .and_then(|len| len.checked_add(tail.len()))
            .unwrap_or(usize::MAX);
        (self.trace)(TraceEvent::Post {
            kind,
            wr_id,
            len,
            sges: sges.len(),
            result,
        });
        result
    }
}

impl<T: Transport, F: FnMut(TraceEvent)> TransportWrapper for Tracer<T, F> {
    type Inner = T;

    fn inner(&self) -> &T {
        &self.inner
    }

    fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        let result = self.inner.post_recv(wr_id, buf);
        self.post(PostKind::Recv, wr_id, &[buf], result)
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let result = self.inner.post_send(wr_id, sges, imm);
        self.post(PostKind::Send { imm }, wr_id, sges, result)
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let result = self.inner.post_write(wr_id, sges, dst, imm);
        self.post(PostKind::Write { dst, imm }, wr_id, sges, result)
    }

    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        let result = self.inner.post_send_inline(wr_id, data);
        self.post_inline(PostKind::Send { imm: None }, wr_id, data.len(), result)
    }

    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let result = self.inner.post_write_inline(wr_id, data, dst, imm);
        self.post_inline(PostKind::Write { dst, imm }, wr_id, data.len(), result)
    }

    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        let result = self.inner.post_write_tail(wr_id, sges, tail, dst, imm);
        self.post_tail(PostKind::Write { dst, imm }, wr_id, sges, tail, result)
    }

    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        let result = self
            .inner
            .post_write_tail_unsignaled(wr_id, sges, tail, dst);
        self.post_tail(PostKind::WriteUnsignaled { dst }, wr_id, sges, tail, result)
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        let drained = self.inner.poll_completions(out)?;
        for completion in out.iter().take(drained) {
            (self.trace)(TraceEvent::Completion(*completion));
        }
        Ok(drained)
    }

    fn disconnect(&mut self) {
        (self.trace)(TraceEvent::Disconnect);
        self.inner.disconnect();
    }
}
