//! `SocketAddr` ⇄ the `sockaddr` structs rdma_cm takes and returns.
//!
//! rdma_cm addresses connections by IP address and port even on InfiniBand
//! (IPoIB) and RoCE (the netdev's IP), in the `RDMA_PS_TCP` port space.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{
    AF_INET, AF_INET6, in_addr, in6_addr, sa_family_t, sockaddr, sockaddr_in, sockaddr_in6,
};

/// A socket address in the C layout rdma_cm reads.
#[derive(Clone, Copy)]
pub(crate) enum SockAddr {
    V4(sockaddr_in),
    V6(sockaddr_in6),
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => Self::V4(sockaddr_in {
                sin_family: AF_INET as sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(v6) => Self::V6(sockaddr_in6 {
                sin6_family: AF_INET6 as sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            }),
        }
    }
}

impl SockAddr {
    /// The `struct sockaddr *` rdma_cm's resolve/bind calls take. They only
    /// read through it, despite the non-const C prototypes.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut sockaddr {
        match self {
            Self::V4(v4) => (v4 as *mut sockaddr_in).cast(),
            Self::V6(v6) => (v6 as *mut sockaddr_in6).cast(),
        }
    }
}

/// The Rust address of an IPv4 `sockaddr_in`.
pub(crate) fn from_sockaddr_in(raw: &sockaddr_in) -> SocketAddr {
    let ip = Ipv4Addr::from(raw.sin_addr.s_addr.to_ne_bytes());
    SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(raw.sin_port)))
}

/// The Rust address of an IPv6 `sockaddr_in6`.
pub(crate) fn from_sockaddr_in6(raw: &sockaddr_in6) -> SocketAddr {
    let ip = Ipv6Addr::from(raw.sin6_addr.s6_addr);
    SocketAddr::V6(SocketAddrV6::new(
        ip,
        u16::from_be(raw.sin6_port),
        u32::from_be(raw.sin6_flowinfo),
        raw.sin6_scope_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_network_order() {
        let addr: SocketAddr = "192.168.7.9:7471".parse().unwrap();
        let SockAddr::V4(raw) = SockAddr::from(addr) else {
            panic!("not v4")
        };
        assert_eq!(raw.sin_family, AF_INET as sa_family_t);
        assert_eq!(raw.sin_port.to_ne_bytes(), 7471u16.to_be_bytes());
        assert_eq!(raw.sin_addr.s_addr.to_ne_bytes(), [192, 168, 7, 9]);
        assert_eq!(from_sockaddr_in(&raw), addr);
    }

    #[test]
    fn ipv6_round_trips() {
        let addr: SocketAddr = "[fe80::1%3]:18515".parse().unwrap();
        let SockAddr::V6(raw) = SockAddr::from(addr) else {
            panic!("not v6")
        };
        assert_eq!(raw.sin6_family, AF_INET6 as sa_family_t);
        assert_eq!(raw.sin6_port.to_ne_bytes(), 18515u16.to_be_bytes());
        assert_eq!(raw.sin6_scope_id, 3);
        assert_eq!(from_sockaddr_in6(&raw), addr);
    }

    #[test]
    fn pointer_is_the_struct() {
        let mut addr = SockAddr::from("10.0.0.1:1".parse::<SocketAddr>().unwrap());
        let ptr = addr.as_mut_ptr();
        let SockAddr::V4(ref raw) = addr else {
            panic!("not v4")
        };
        assert_eq!(
            ptr.cast_const().cast::<sockaddr_in>(),
            raw as *const sockaddr_in
        );
    }
}
