//! A port's VLANs and registered link-locals through the HTTP API, against
//! a real etcd: checked, stored, projected to the host, claimed in the
//! subnet like fixed IPs, and refused with a clear error (the port record
//! in force stays).

mod common;

use common::*;
use havip_controller::model::*;
use havip_controller::ErrorCode;

fn ll(s: &str) -> std::net::Ipv6Addr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlans_and_link_locals_of_a_port() {
    let etcd = Etcd::start();
    let ctl = Controller::start(&etcd).await;
    let op = ctl.client(OP);
    network(&op).await;

    let mut req = port_req("vm-1", "sn-a", "10.0.0.11", "hv-1");
    req.vlans = vec![10, 4094];
    req.link_locals = vec![ll("fe80::5:1"), ll("fe80::5:1"), ll("fe80::5:2")];
    let p1 = op.put_port("p1", &req).await.unwrap();
    assert_eq!(p1.vlans, vec![10, 4094]);
    assert_eq!(p1.link_locals, vec![ll("fe80::5:1"), ll("fe80::5:2")]);
    let listed = op.list_ports(&PortQuery::default()).await.unwrap();
    let stored = listed.iter().find(|p| p.id == "p1").expect("p1 listed");
    assert_eq!(
        (&stored.vlans, &stored.link_locals),
        (&p1.vlans, &p1.link_locals)
    );
    let host = ctl
        .store
        .host_ports("hv-1")
        .await
        .unwrap()
        .into_iter()
        .find(|h| h.port == "p1")
        .expect("p1 on hv-1");
    assert_eq!(
        (host.vlans, host.link_locals),
        (p1.vlans.clone(), p1.link_locals.clone())
    );

    // Bad records, each refused with its reason; p1 stays as it was.
    let with = |vlans: Vec<i64>, lls: Vec<&str>| {
        let mut r = port_req("vm-1", "sn-a", "10.0.0.11", "hv-1");
        r.vlans = vlans;
        r.link_locals = lls.into_iter().map(ll).collect();
        r
    };
    let cases = [
        (
            "VLAN 4095",
            with(vec![4095], vec![]),
            ErrorCode::InvalidArgument,
            "not a VLAN id (1 to 4094)",
        ),
        (
            "VLAN 0",
            with(vec![0], vec![]),
            ErrorCode::InvalidArgument,
            "priority tag",
        ),
        (
            "nine VLANs",
            with((1..=9).collect(), vec![]),
            ErrorCode::InvalidArgument,
            "at most 8",
        ),
        (
            "not link-local",
            with(vec![], vec!["fd00:a::5"]),
            ErrorCode::InvalidArgument,
            "fe80::/10",
        ),
        (
            "nine link-locals",
            with(vec![], (1..=9).map(|_| "fe80::1").collect()),
            ErrorCode::InvalidArgument,
            "at most 8",
        ),
    ];
    for (what, req, want, text) in cases {
        let (got, msg) = code(op.put_port("p1", &req).await);
        assert_eq!(got, want, "{what}: {msg}");
        assert!(msg.contains(text), "{what}: {msg:?} lacks {text:?}");
    }
    // A link-local registered for another port of the subnet is in use.
    let mut req = port_req("vm-2", "sn-a", "10.0.0.12", "hv-2");
    req.link_locals = vec![ll("fe80::5:2")];
    let (got, msg) = code(op.put_port("p2", &req).await);
    assert_eq!(got, ErrorCode::AddressInUse, "{msg}");
    assert!(msg.contains("port p1"), "{msg}");
    let after = op.list_ports(&PortQuery::default()).await.unwrap();
    let p1_now = after.iter().find(|p| p.id == "p1").unwrap();
    assert_eq!(p1_now, &p1, "a refused change left p1 as it was");

    // Dropping a link-local frees it for another port.
    let mut req = port_req("vm-1", "sn-a", "10.0.0.11", "hv-1");
    req.link_locals = vec![ll("fe80::5:1")];
    op.put_port("p1", &req).await.unwrap();
    let mut req = port_req("vm-2", "sn-a", "10.0.0.12", "hv-2");
    req.link_locals = vec![ll("fe80::5:2")];
    assert_eq!(
        op.put_port("p2", &req).await.unwrap().link_locals,
        vec![ll("fe80::5:2")]
    );
}
