//! [`VerbsTransport`]: one reliable-connected queue pair as an
//! [`rdio_transport::Transport`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ptr;
use std::time::{Duration, Instant};

use rdio_transport::regions::{NotWritable, RegionTable, Registered};
use rdio_transport::{
    Access, Caps, Completion, RegionId, RemoteBuf, Slice, Transport, TransportError, WrId,
    total_len,
};
use rdma_sys::{ibv_qp_cap, ibv_sge, rdma_cm_event_type, rdma_conn_param};

use crate::access::ibv_access_flags;
use crate::config::VerbsConfig;
use crate::error::VerbsError;
use crate::posted::{Posted, PostedKind, PostedTable, RawWc, SGE_LIMIT, completion};
use crate::provider::{RdmaKind, provider_name};
use crate::sys::{
    CmId, CompChannel, Cq, DeviceList, Endpoint, Pd, Qp, Region, RegisterError, poll_readable,
};
use crate::wr::{SendOp, recv_wr, send_wr, sge};

use rdma_cm_event_type::{
    RDMA_CM_EVENT_ADDR_RESOLVED, RDMA_CM_EVENT_DEVICE_REMOVAL, RDMA_CM_EVENT_DISCONNECTED,
    RDMA_CM_EVENT_ESTABLISHED, RDMA_CM_EVENT_ROUTE_RESOLVED,
};

/// Registered memory as the shared region table sees it; rights, bounds and
/// the busy rule are the table's ([`RegionTable`]).
impl Registered for Region {
    fn len(&self) -> usize {
        Region::len(self)
    }

    fn bytes(&self) -> &[u8] {
        Region::bytes(self)
    }

    fn bytes_mut(&mut self) -> Result<&mut [u8], NotWritable> {
        Region::bytes_mut(self).ok_or(NotWritable::Lent)
    }
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Established; work may be posted.
    Up,
    /// A work request failed, so the QP is in the error state: nothing more
    /// can be posted, but the peer has not been told yet.
    Failed,
    /// Not (or no longer) connected: before the handshake finished, or after
    /// `rdma_disconnect` (ours, or in answer to the peer's). Nothing to tell
    /// the peer on drop.
    Closed,
}

/// One side of an RDMA reliable connection over ibverbs, set up with rdma_cm.
///
/// Each connection has its own protection domain (so a remote key handed to
/// one peer can never reach another connection's memory), one completion
/// queue for both work queues, and a completion channel for [`Transport::wait`].
///
/// Regions are page-aligned heap allocations registered with exactly the
/// rights asked for (see [`crate::ibv_access_flags`]). A region referenced by
/// a posted work request is busy until that request's completion has been
/// drained by [`Transport::poll_completions`]: [`Transport::region_mut`] and
/// [`Transport::deregister`] return [`TransportError::Busy`] meanwhile, which
/// is what makes handing its address to the HCA sound.
pub struct VerbsTransport {
    // Field order is drop order, the order rdma-core requires: the QP first
    // (no more DMA), then the CQ it completes on, the memory regions, the
    // protection domain they belong to, the completion channel of the CQ,
    // and last the rdma_cm id with its event channel.
    qp: Qp,
    cq: Cq,
    regions: RegionTable<Region>,
    pd: Pd,
    comp: CompChannel,
    endpoint: Endpoint,

    provider: String,
    caps: Caps,
    /// Largest send or write posted with `IBV_SEND_INLINE`.
    max_inline: usize,
    posted: PostedTable,
    /// Completions taken off the CQ by `wait` but not yet drained.
    ready: VecDeque<RawWc>,
    link: Link,
}

/// The `rdma_connect` / `rdma_accept` parameters: one outstanding RDMA read
/// each way (rdio issues none, but a peer may read a `REMOTE_READ` region),
/// no private data, and the configured retry policy.
fn conn_param(config: &VerbsConfig) -> rdma_conn_param {
    rdma_conn_param {
        private_data: ptr::null(),
        private_data_len: 0,
        responder_resources: 1,
        initiator_depth: 1,
        flow_control: 1,
        retry_count: config.retry_count,
        rnr_retry_count: config.rnr_retry_count,
        srq: 0,
        qp_num: 0,
    }
}

/// Fail early, with the hint, on a host without RDMA devices.
pub(crate) fn require_devices() -> Result<(), VerbsError> {
    DeviceList::get().map(drop)
}

/// What a post failure means: providers return `ENOMEM` for a full work
/// queue.
fn post_error(errno: i32) -> TransportError {
    if errno == libc::ENOMEM {
        TransportError::QueueFull
    } else {
        TransportError::Os(errno)
    }
}

/// A setup-time error seen by a data-path call.
fn transport_error(error: VerbsError) -> TransportError {
    match error {
        VerbsError::Os { errno, .. } => TransportError::Os(errno),
        _ => TransportError::Disconnected,
    }
}

impl VerbsTransport {
    /// Connect to a [`crate::VerbsListener`] (or any rdma_cm server) at
    /// `addr`: resolve the address and route, create the queue pair and
    /// connect, each step bounded by `config.timeout`.
    pub fn connect(addr: SocketAddr, config: &VerbsConfig) -> Result<Self, VerbsError> {
        config.validate()?;
        require_devices()?;
        let deadline = Instant::now().checked_add(config.timeout);
        let endpoint = Endpoint::new()?;
        endpoint.id.resolve_addr(addr, config.timeout)?;
        endpoint.events.expect(
            RDMA_CM_EVENT_ADDR_RESOLVED,
            deadline,
            "resolving the address",
        )?;
        endpoint.id.resolve_route(config.timeout)?;
        endpoint.events.expect(
            RDMA_CM_EVENT_ROUTE_RESOLVED,
            deadline,
            "resolving the route",
        )?;
        let mut transport = Self::on_endpoint(endpoint, config)?;
        transport.endpoint.id.connect(&conn_param(config))?;
        transport
            .endpoint
            .events
            .expect(RDMA_CM_EVENT_ESTABLISHED, deadline, "connecting")?;
        transport.link = Link::Up;
        Ok(transport)
    }

    /// Accept the connection request whose id is `request`.
    pub(crate) fn accept(request: CmId, config: &VerbsConfig) -> Result<Self, VerbsError> {
        let deadline = Instant::now().checked_add(config.timeout);
        // On any error below the id is destroyed unaccepted, which makes the
        // CM reject the peer.
        let endpoint = Endpoint::adopt(request)?;
        let mut transport = Self::on_endpoint(endpoint, config)?;
        transport.endpoint.id.accept(&conn_param(config))?;
        transport
            .endpoint
            .events
            .expect(RDMA_CM_EVENT_ESTABLISHED, deadline, "accepting")?;
        transport.link = Link::Up;
        Ok(transport)
    }

    /// Create the connection's verbs objects on the device rdma_cm bound
    /// `endpoint` to. The result is not connected yet.
    fn on_endpoint(endpoint: Endpoint, config: &VerbsConfig) -> Result<Self, VerbsError> {
        let context = endpoint.id.context().ok_or(VerbsError::Os {
            call: "rdma_cm_id.verbs",
            errno: libc::ENODEV,
        })?;
        let device = context.query_device()?;
        let port = context.query_port(endpoint.id.port_num())?;
        let transport_type = context.transport_type();
        let kind = RdmaKind::from_raw(transport_type, port.link_layer).ok_or(
            VerbsError::UnsupportedTransport {
                transport_type,
                link_layer: port.link_layer,
            },
        )?;
        let provider = provider_name(kind, &context.device_name());

        let device_limit = |value: i32| u32::try_from(value).unwrap_or(0);
        let send_depth = config.send_depth.min(device_limit(device.max_qp_wr));
        let recv_depth = config.recv_depth.min(device_limit(device.max_qp_wr));
        let max_sge = config.max_sge.min(device_limit(device.max_sge));
        let cq_entries = send_depth + recv_depth;
        if cq_entries > device_limit(device.max_cqe) {
            return Err(VerbsError::InvalidConfig {
                field: "send_depth + recv_depth exceeds the device's max_cqe",
            });
        }
        let wanted = ibv_qp_cap {
            max_send_wr: send_depth,
            max_recv_wr: recv_depth,
            max_send_sge: max_sge,
            max_recv_sge: max_sge,
            max_inline_data: config.max_inline,
        };

        let comp = CompChannel::new(context)?;
        let pd = Pd::new(context)?;
        let cq = Cq::new(context, cq_entries, &comp)?;
        let (qp, granted) = Qp::new(&endpoint.id, &pd, &cq, wanted)?;

        // Never use more than the CQ was sized for, even if the QP got more.
        let max_send = granted.max_send_wr.min(send_depth) as usize;
        let max_recv = granted.max_recv_wr.min(recv_depth) as usize;
        let max_message = port.max_msg_sz as usize;
        let caps = Caps {
            max_message,
            max_write: max_message,
            max_sge: granted.max_send_sge.min(granted.max_recv_sge).min(max_sge) as usize,
            max_recv,
            max_send,
            // ibv_reg_mr pins every page it registers.
            pins_registrations: true,
            // `IBV_SEND_INLINE` is not used yet: docs/PERFORMANCE.md, stop 31.
            max_inline: 0,
            // Each post rings the doorbell (`ibv_post_send`).
            deferred_posts: false,
        };
        Ok(Self {
            qp,
            cq,
            regions: RegionTable::new(),
            pd,
            comp,
            endpoint,
            provider,
            caps,
            max_inline: granted.max_inline_data.min(config.max_inline) as usize,
            posted: PostedTable::new(max_send, max_recv),
            ready: VecDeque::new(),
            link: Link::Closed,
        })
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.id.local_addr()
    }

    fn require_up(&self) -> Result<(), TransportError> {
        if self.link == Link::Up {
            Ok(())
        } else {
            Err(TransportError::Disconnected)
        }
    }

    /// The `ibv_sge` for `slice`, checked against its region.
    fn sge_for(&self, slice: &Slice) -> Result<ibv_sge, TransportError> {
        let (region, _) = self.regions.resolve(*slice)?;
        let length = u32::try_from(slice.len).map_err(|_| TransportError::MessageTooLarge)?;
        Ok(sge(
            region.addr() + slice.offset as u64,
            length,
            region.lkey(),
        ))
    }

    /// Fill `out` with the elements of `slices`; returns how many.
    fn gather(
        &self,
        slices: &[Slice],
        out: &mut [ibv_sge; SGE_LIMIT],
    ) -> Result<usize, TransportError> {
        if slices.len() > self.caps.max_sge {
            return Err(TransportError::TooManySegments);
        }
        for (element, slice) in out.iter_mut().zip(slices) {
            *element = self.sge_for(slice)?;
        }
        Ok(slices.len())
    }

    /// Count one more (or one fewer) posted reference to each region.
    fn set_busy(&mut self, regions: &[RegionId], posted: bool) {
        for &region in regions {
            if posted {
                self.regions.acquire(region);
            } else {
                self.regions.release(region);
            }
        }
    }

    /// Post a send or RDMA write.
    fn post_outgoing(
        &mut self,
        wr_id: WrId,
        slices: &[Slice],
        op: SendOp,
    ) -> Result<(), TransportError> {
        self.require_up()?;
        let mut elements = [sge(0, 0, 0); SGE_LIMIT];
        let count = self.gather(slices, &mut elements)?;
        let total = total_len(slices).ok_or(TransportError::MessageTooLarge)?;
        let kind = match op {
            SendOp::Send { .. } if total > self.caps.max_message => {
                return Err(TransportError::MessageTooLarge);
            }
            SendOp::Send { .. } => PostedKind::Send,
            SendOp::Write { .. } if total > self.caps.max_write => {
                return Err(TransportError::MessageTooLarge);
            }
            SendOp::Write { remote, .. } if total > remote.len as usize => {
                return Err(TransportError::OutOfBounds);
            }
            SendOp::Write { .. } => PostedKind::Write,
        };
        let posted = Posted::new(wr_id, kind, slices);
        let slot = self.posted.insert(posted)?;
        let inline = total > 0 && total <= self.max_inline;
        let mut wr = send_wr(slot, &mut elements[..count], op, inline);
        // SAFETY: every element was checked by `sge_for` to lie inside a
        // region registered with this connection's PD. `set_busy` below keeps
        // those regions from being deregistered (so neither unregistered nor
        // freed) or lent out mutably until this request's completion is
        // drained; the QP is destroyed before any region on drop.
        if let Err(errno) = unsafe { self.qp.post_send(&mut wr) } {
            self.posted.remove(slot);
            return Err(post_error(errno));
        }
        self.set_busy(posted.regions(), true);
        Ok(())
    }

    /// Handle queued rdma_cm events: the peer disconnecting (or the device
    /// going away) closes our side too, which flushes outstanding requests.
    fn drain_cm_events(&mut self) -> Result<(), TransportError> {
        while let Some(event) = self.endpoint.events.try_next().map_err(transport_error)? {
            if matches!(
                event.event,
                RDMA_CM_EVENT_DISCONNECTED | RDMA_CM_EVENT_DEVICE_REMOVAL
            ) {
                self.close();
            }
        }
        Ok(())
    }

    /// `rdma_disconnect` once: the QP enters the error state, outstanding
    /// requests complete as flushed, and the peer is told.
    fn close(&mut self) {
        if self.link != Link::Closed {
            // Failure means the CM already considers the connection gone;
            // there is nothing left to undo.
            let _ = self.endpoint.id.disconnect();
            self.link = Link::Closed;
        }
    }

    fn take_completion(&mut self, wc: &RawWc) -> Option<Completion> {
        // A slot we did not hand out can only come from a provider bug; there
        // is no request to complete for it.
        let posted = self.posted.remove(wc.slot)?;
        self.set_busy(posted.regions(), false);
        let done = completion(&posted, wc);
        if done.status.is_err() && self.link == Link::Up {
            self.link = Link::Failed;
        }
        Some(done)
    }
}

impl Transport for VerbsTransport {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn caps(&self) -> Caps {
        self.caps
    }

    fn register(&mut self, len: usize, access: Access) -> Result<RegionId, TransportError> {
        // Ids are never reused (the table's rule), so a stale id can never
        // name a new region.
        self.regions.next_id()?;
        let region =
            Region::new(&self.pd, len, ibv_access_flags(access)).map_err(|error| match error {
                RegisterError::NoMemory => TransportError::NoMemory,
                RegisterError::Os(errno) => TransportError::Os(errno),
            })?;
        self.regions.insert(region, access)
    }

    fn register_external<M>(&mut self, memory: M) -> Result<RegionId, TransportError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        self.regions.next_id()?;
        let region = Region::external(&self.pd, memory).map_err(|error| match error {
            RegisterError::NoMemory => TransportError::NoMemory,
            RegisterError::Os(errno) => TransportError::Os(errno),
        })?;
        self.regions.insert(region, Access::empty())
    }

    fn deregister(&mut self, region: RegionId) -> Result<(), TransportError> {
        self.regions.remove(region).map(drop)
    }

    fn region(&self, region: RegionId) -> Result<&[u8], TransportError> {
        self.regions.bytes(region)
    }

    fn region_mut(&mut self, region: RegionId) -> Result<&mut [u8], TransportError> {
        self.regions.bytes_mut(region)
    }

    fn remote_buf(
        &self,
        region: RegionId,
        offset: usize,
        len: usize,
    ) -> Result<RemoteBuf, TransportError> {
        let (region, window) = self.regions.window(region, offset, len)?;
        Ok(RemoteBuf {
            addr: region.addr() + offset as u64,
            key: region.rkey(),
            len: window,
        })
    }

    fn post_recv(&mut self, wr_id: WrId, buf: Slice) -> Result<(), TransportError> {
        self.require_up()?;
        let element = self.sge_for(&buf)?;
        let posted = Posted::new(wr_id, PostedKind::Recv, &[buf]);
        let slot = self.posted.insert(posted)?;
        let mut elements = [element];
        // A zero-length buffer only takes write-with-immediate notifications
        // and empty sends: post it without a scatter/gather element.
        let count = usize::from(buf.len > 0);
        let mut wr = recv_wr(slot, &mut elements[..count]);
        // SAFETY: as in `post_outgoing`: the element lies inside a region of
        // this PD, which stays registered, allocated and not lent out mutably
        // until the completion is drained (busy count below).
        if let Err(errno) = unsafe { self.qp.post_recv(&mut wr) } {
            self.posted.remove(slot);
            return Err(post_error(errno));
        }
        self.set_busy(posted.regions(), true);
        Ok(())
    }

    fn post_send(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.post_outgoing(wr_id, sges, SendOp::Send { imm })
    }

    fn post_write(
        &mut self,
        wr_id: WrId,
        sges: &[Slice],
        dst: RemoteBuf,
        imm: Option<u32>,
    ) -> Result<(), TransportError> {
        self.post_outgoing(wr_id, sges, SendOp::Write { remote: dst, imm })
    }

    fn poll_completions(&mut self, out: &mut [Completion]) -> Result<usize, TransportError> {
        self.drain_cm_events()?;
        let mut written = 0;
        while written < out.len() {
            if self.ready.is_empty()
                && self
                    .cq
                    .poll(&mut self.ready, out.len() - written)
                    .map_err(TransportError::Os)?
                    == 0
            {
                break;
            }
            let Some(wc) = self.ready.pop_front() else {
                break;
            };
            if let Some(done) = self.take_completion(&wc) {
                out[written] = done;
                written += 1;
            }
        }
        Ok(written)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        if !self.ready.is_empty() {
            return Ok(());
        }
        self.drain_cm_events()?;
        self.cq.arm().map_err(TransportError::Os)?;
        // A completion that arrived before arming raises no event: look once
        // more after arming (ibv_req_notify_cq(3)).
        if self
            .cq
            .poll(&mut self.ready, usize::MAX)
            .map_err(TransportError::Os)?
            > 0
        {
            return Ok(());
        }
        if self.link != Link::Up && self.posted.outstanding() == 0 {
            // Nothing is in flight and nothing new can be posted: no
            // completion will ever come.
            return Err(TransportError::Disconnected);
        }
        poll_readable(&[self.comp.fd(), self.endpoint.events.fd()], timeout)
            .map_err(TransportError::Os)?;
        while self.comp.consume_event().map_err(TransportError::Os)? {}
        self.drain_cm_events()
    }

    fn disconnect(&mut self) {
        self.close();
    }
}

impl Drop for VerbsTransport {
    fn drop(&mut self) {
        // Tell the peer before the fields are torn down in declaration order.
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_parameters() {
        let config = VerbsConfig {
            retry_count: 6,
            rnr_retry_count: 3,
            ..VerbsConfig::default()
        };
        let param = conn_param(&config);
        assert!(param.private_data.is_null());
        assert_eq!(param.private_data_len, 0);
        assert_eq!((param.responder_resources, param.initiator_depth), (1, 1));
        assert_eq!((param.retry_count, param.rnr_retry_count), (6, 3));
        assert_eq!((param.srq, param.qp_num), (0, 0));
    }

    #[test]
    fn handles_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<VerbsTransport>();
        assert_send::<crate::VerbsListener>();
    }

    #[test]
    fn full_work_queues_are_queue_full() {
        assert_eq!(post_error(libc::ENOMEM), TransportError::QueueFull);
        assert_eq!(post_error(libc::EINVAL), TransportError::Os(libc::EINVAL));
    }

    /// Connecting where nothing can answer is a typed error within the
    /// timeout, never a crash or a hang. On this project's machines (no RDMA
    /// in the kernel) it is `NoRdmaDevices` with `ENOSYS`.
    #[test]
    fn connect_without_a_peer_fails_cleanly() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let config = VerbsConfig {
            timeout: Duration::from_secs(2),
            ..VerbsConfig::default()
        };
        let error = VerbsTransport::connect(addr, &config)
            .map(drop)
            .unwrap_err();
        if !std::path::Path::new("/sys/class/infiniband").exists() {
            assert_eq!(
                error,
                VerbsError::NoRdmaDevices {
                    errno: Some(libc::ENOSYS)
                }
            );
        }
    }

    #[test]
    fn invalid_config_is_rejected_before_touching_devices() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7471));
        let config = VerbsConfig {
            max_sge: 0,
            ..VerbsConfig::default()
        };
        let error = VerbsTransport::connect(addr, &config)
            .map(drop)
            .unwrap_err();
        assert_eq!(
            error,
            VerbsError::InvalidConfig {
                field: "max_sge must be 1..=8"
            }
        );
    }
}
