//! Which qdisc holds an interface's ingress place (`ffff:`): `clsact`, or
//! `ingress` (libvirt's inbound QoS adds one, and so do hand-written
//! policing rules). A netlink TC egress filter needs `clsact`: on an
//! `ingress` qdisc the kernel puts a filter asked for egress on the ingress
//! hook (the one block that qdisc has), where it would judge frames from
//! the VM instead of frames to it. So the agent asks before it adds one.

use std::{io, os::fd::AsRawFd};

use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ECHO, NLM_F_REQUEST},
    packet_route::{
        tc::{TcAttribute, TcHandle, TcMessage},
        RouteNetlinkMessage,
    },
    sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr},
};

/// The kind of the qdisc at `ifindex`'s ingress place (`"clsact"`,
/// `"ingress"`), or `None` if it has none: an RTM_GETQDISC for that place
/// alone (a dump would list every qdisc of the namespace, for each port).
pub fn ingress_kind(ifindex: u32) -> io::Result<Option<String>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // An answer that never comes must not hang the agent.
    let timeout = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: a valid socket and a timeval of the size given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    let index = i32::try_from(ifindex).map_err(io::Error::other)?;
    let mut query = TcMessage::with_index(index);
    query.header.parent = TcHandle::INGRESS;
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetQueueDiscipline(query));
    // The kernel answers a single get with the notification it would
    // send the group, echoed to us.
    request.header.flags = NLM_F_REQUEST | NLM_F_ECHO;
    request.finalize();
    let mut buf = vec![0; request.header.length as usize];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;

    loop {
        let (bytes, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < bytes.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match msg.payload {
                NetlinkPayload::Error(e) if e.raw_code() == -libc::ENOENT => return Ok(None),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                NetlinkPayload::Done(_) => return Ok(None),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewQueueDiscipline(q))
                    if q.header.index == index =>
                {
                    return Ok(q.attributes.iter().find_map(|a| match a {
                        TcAttribute::Kind(k) => Some(k.clone()),
                        _ => None,
                    }));
                }
                _ => {}
            }
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}
