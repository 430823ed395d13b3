//! Transports that wrap another one and change a few of its calls.
//!
//! A wrapper (a tracer, a fault injector, a transport that also steps an
//! in-process server, a renamed provider, a test probe) usually changes two
//! or three calls and forwards the other dozen. Written out by hand, that
//! forwarding is hundreds of repetitive lines, and forgetting one call is
//! silent whenever [`Transport`] has a default for it: a wrapper without
//! `register_external` quietly turns the wrapped transport's zero-copy
//! path into [`TransportError::Unsupported`].
//!
//! [`TransportWrapper`] has every [`Transport`] call, each forwarding to
//! [`TransportWrapper::inner`] by default, and every wrapper is a
//! `Transport` through one blanket implementation: a wrapper writes only
//! the calls it changes, and a call it does not write reaches the wrapped
//! transport, defaulted ones included.
//!
//! ```
//! use rdio_transport::{Transport, TransportError, TransportWrapper};
//!
//! /// Counts `disconnect` calls; everything else is `T`'s.
//! struct Counting<T> {
//!     inner: T,
//!     disconnects: u32,
//! }
//!
//! impl<T: Transport> TransportWrapper for Counting<T> {
//!     type Inner = T;
//!     fn inner(&self) -> &T {
//!         &self.inner
//!     }
//!     fn inner_mut(&mut self) -> &mut T {
//!         &mut self.inner
//!     }
//!     fn disconnect(&mut self) {
//!         self.disconnects += 1;
//!         self.inner.disconnect();
//!     }
//! }
//! ```
//!
//! A type is either a wrapper or implements [`Transport`] itself, never
//! both (the blanket implementation would conflict). With both traits in
//! scope, a call on a concrete wrapper type is ambiguous; name the trait
//! (`Transport::post_send(&mut t, ..)`) or import only `Transport` where
//! the wrapper is used, as users of a transport do.

use core::time::Duration;

use crate::{
    Access, Caps, Completion, RegionId, RemoteBuf, Slice, Transport, TransportError, WrId,
};

/// A transport built around another: every call forwards to
/// [`TransportWrapper::inner`] unless the wrapper overrides it. Each call
/// means what the [`Transport`] call of the same name means.
pub trait TransportWrapper {
    /// The wrapped transport.
    type Inner: Transport;

    /// The wrapped transport.
    fn inner(&self) -> &Self::Inner;

    /// The wrapped transport, mutably.
    fn inner_mut(&mut self) -> &mut Self::Inner;

    /// [`Transport::provider`].
    fn provider(&self) -> &str {
        self.inner().provider()
    }

    /// [`Transport::caps`].
    fn caps(&self) -> Caps {
        self.inner().caps()
    }

    /// [`Transport::register`].
    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        self.inner_mut().register(len, access)
    }

    /// [`Transport::register_external`].
    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
        Self: Sized,
    {
        self.inner_mut().register_external(memory)
    }

    /// [`Transport::deregister`].
    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError> {
        self.inner_mut().deregister(region)
    }

    /// [`Transport::region`].
    fn region(&self, region: RegionId) -> Result<&[u8], TransportError> {
        self.inner().region(region)
    }

    /// [`Transport::region_mut`].
    fn region_mut(&mut self, region: RegionId) -> Result<&mut [u8], TransportError> {
        self.inner_mut().region_mut(region)
    }

    /// [`Transport::remote_buf`].
    fn remote_buf(
        &self,
        region: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        self.inner().remote_buf(region, offset, len)
    }

    /// [`Transport::post_recv`].
    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        self.inner_mut().post_recv(wr_id, buf)
    }

    /// [`Transport::post_send`].
    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner_mut().post_send(wr_id, sges, imm)
    }

    /// [`Transport::post_write`].
    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner_mut().post_write(wr_id, sges, dst, imm)
    }

    /// [`Transport::post_send_inline`].
    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        self.inner_mut().post_send_inline(wr_id, data)
    }

    /// [`Transport::post_write_inline`].
    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner_mut().post_write_inline(wr_id, data, dst, imm)
    }

    /// [`Transport::post_write_tail`].
    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.inner_mut()
            .post_write_tail(wr_id, sges, tail, dst, imm)
    }

    /// [`Transport::post_write_tail_unsignaled`].
    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        self.inner_mut()
            .post_write_tail_unsignaled(wr_id, sges, tail, dst)
    }

    /// [`Transport::flush`].
    fn flush(&mut self) -> Result<(), TransportError> {
        self.inner_mut().flush()
    }

    /// [`Transport::poll_completions`].
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        self.inner_mut().poll_completions(out)
    }

    /// [`Transport::wait`].
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.inner_mut().wait(timeout)
    }

    /// [`Transport::disconnect`].
    fn disconnect(&mut self) {
        self.inner_mut().disconnect();
    }
}

impl<W: TransportWrapper> Transport for W {
    #[inline]
    fn provider(&self) -> &str {
        TransportWrapper::provider(self)
    }

    #[inline]
    fn caps(&self) -> Caps {
        TransportWrapper::caps(self)
    }

    #[inline]
    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        TransportWrapper::register(self, len, access)
    }

    #[inline]
    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        TransportWrapper::register_external(self, memory)
    }

    #[inline]
    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError> {
        TransportWrapper::deregister(self, region)
    }

    #[inline]
    fn region(&self, region: RegionId) -> Result<&[u8], TransportError> {
        TransportWrapper::region(self, region)
    }

    #[inline]
    fn region_mut(&mut self, region: RegionId) -> Result<&mut [u8], TransportError> {
        TransportWrapper::region_mut(self, region)
    }

    #[inline]
    fn remote_buf(
        &self,
        region: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        TransportWrapper::remote_buf(self, region, offset, len)
    }

    #[inline]
    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        TransportWrapper::post_recv(self, wr_id, buf)
    }

    #[inline]
    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        TransportWrapper::post_send(self, wr_id, sges, imm)
    }

    #[inline]
    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        TransportWrapper::post_write(self, wr_id, sges, dst, imm)
    }

    #[inline]
    fn post_send_inline(&mut self, wr_id: WrId, data: &[u8]) -> Result<(), TransportError> {
        TransportWrapper::post_send_inline(self, wr_id, data)
    }

    #[inline]
    fn post_write_inline(
        &mut self,
        wr_id: WrId,
        data: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        TransportWrapper::post_write_inline(self, wr_id, data, dst, imm)
    }

    #[inline]
    fn post_write_tail(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        TransportWrapper::post_write_tail(self, wr_id, sges, tail, dst, imm)
    }

    #[inline]
    fn post_write_tail_unsignaled(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        tail: &[u8],
        dst: RemoteBuf,
    ) -> Result<(), TransportError> {
        TransportWrapper::post_write_tail_unsignaled(self, wr_id, sges, tail, dst)
    }

    #[inline]
    fn flush(&mut self) -> Result<(), TransportError> {
        TransportWrapper::flush(self)
    }

    #[inline]
    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        TransportWrapper::poll_completions(self, out)
    }

    #[inline]
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        TransportWrapper::wait(self, timeout)
    }

    #[inline]
    fn disconnect(&mut self) {
        TransportWrapper::disconnect(self);
    }
}
