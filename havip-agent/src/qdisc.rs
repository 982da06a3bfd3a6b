//! Which qdisc holds an interface's ingress place (`ffff:`): `clsact`, or
//! `ingress` (libvirt's inbound QoS adds one, and so do hand-written
//! policing rules). A netlink TC egress filter needs `clsact`: on an
//! `ingress` qdisc the kernel puts a filter asked for egress on the ingress
//! hook (the one block that qdisc has), where it would judge frames from
//! the VM instead of frames to it. So the agent asks before it adds one.

use std::io;

use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST},
    packet_route::{
        tc::{TcAttribute, TcHandle, TcMessage},
        RouteNetlinkMessage,
    },
    sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr},
};

/// The kind of the qdisc at `ifindex`'s ingress place (`"clsact"`,
/// `"ingress"`), or `None` if it has none (RTM_GETQDISC, a dump).
pub fn ingress_kind(ifindex: u32) -> io::Result<Option<String>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let index = i32::try_from(ifindex).map_err(io::Error::other)?;
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetQueueDiscipline(
        TcMessage::with_index(index),
    ));
    request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.finalize();
    let mut buf = vec![0; request.header.length as usize];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut found = None;
    loop {
        let (bytes, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < bytes.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(e.to_io());
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewQueueDiscipline(q))
                    if q.header.index == index && q.header.parent == TcHandle::INGRESS =>
                {
                    found = q.attributes.iter().find_map(|a| match a {
                        TcAttribute::Kind(k) => Some(k.clone()),
                        _ => None,
                    });
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}
