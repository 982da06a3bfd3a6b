//! Who owns a VIP now, from the owner reports of every host
//! (`reports/<host>/owners/<vip>`): one rule for the controller, the agent
//! and the EIP gateway.
//!
//! The newest report wins, by etcd `mod_revision`: etcd orders every write
//! of the cluster totally, so "newest" means the same on every reader, and
//! it is what the single `owners/<vip>` key of schema version 1 held (the
//! last write). Neither the `since` time (wall clocks of different hosts)
//! nor the datapath's claim generation (a counter per host) is comparable
//! across hosts.
//!
//! A report whose `host` is not the host of its key is never taken up: a
//! host may write only under its own prefix (etcd's permissions), and a
//! record claiming to be another host's is a lie.

use crate::records::Owner;

/// One host's owner report of a VIP as read: the host of its key, the
/// record and its etcd `mod_revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerReport {
    pub host: String,
    pub owner: Owner,
    pub revision: i64,
}

/// The current owner among `reports` (of one VIP), with the revision of
/// its report: the newest report whose record names the host of its key.
pub fn current_owner<I>(reports: I) -> Option<(Owner, i64)>
where
    I: IntoIterator<Item = OwnerReport>,
{
    reports
        .into_iter()
        .filter(|r| r.owner.host == r.host)
        .max_by_key(|r| r.revision)
        .map(|r| (r.owner, r.revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(key_host: &str, host: &str, port: &str, revision: i64) -> OwnerReport {
        OwnerReport {
            host: key_host.into(),
            owner: Owner {
                port: port.into(),
                host: host.into(),
                since: "2026-01-01T00:00:00Z".parse().unwrap(),
                split_brain: None,
            },
            revision,
        }
    }

    #[test]
    fn the_newest_report_of_its_own_host_wins() {
        assert_eq!(current_owner(vec![]), None);
        let (o, rev) = current_owner(vec![
            report("hv1", "hv1", "p1", 7),
            report("hv2", "hv2", "p2", 9),
            report("hv3", "hv3", "p3", 8),
        ])
        .unwrap();
        assert_eq!((o.port.as_str(), rev), ("p2", 9));
        // hv1 writing a record that names hv2 under its own prefix is not
        // taken up, however new.
        let (o, rev) = current_owner(vec![
            report("hv1", "hv2", "p2", 12),
            report("hv2", "hv2", "p2", 9),
            report("hv1", "hv1", "p1", 7),
        ])
        .unwrap();
        assert_eq!((o.host.as_str(), rev), ("hv2", 9));
    }
}
