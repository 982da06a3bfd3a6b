//! The etcd schema of havip, shared by the controller (which writes most of
//! it) and the host agents (which read it and write acks and owners):
//!
//! - [`keys`]: every key, built and parsed ([`keys::Key`]).
//! - [`records`]: the stored records, typed ([`Mac`], addresses).
//! - [`limits`]: the limits, their defaults and the datapath's maximum.
//! - [`guards`]: the compares that guard writes (a VIP still exists, ...).
//! - [`rules`] and [`addresses`]: the validation every record gets, from
//!   a request, from etcd or from the agent's config file alike.
//!
//! # etcd key layout (schema version 2)
//!
//! All values are JSON. Changing a key or a field meaning means a new
//! schema version: `/havip/v1/schema` holds [`records::SchemaVersion`]
//! (absent: version 1, where acks were `acks/<vip>/<host>` and owners
//! `owners/<vip>`); `havip-controller migrate` (also run at the
//! controller's start) moves version 1's keys to version 2's, and an agent
//! refuses a store of another version than [`SCHEMA_VERSION`].
//!
//! | key | value | written by |
//! |-----|-------|------------|
//! | `/havip/v1/vpcs/<vpc>` | [`records::Vpc`] | controller |
//! | `/havip/v1/subnets/<subnet>` | [`records::Subnet`] (ranges, gateways, reserved ranges) | controller |
//! | `/havip/v1/ports/<port>` | [`records::Port`] (incl. the VIPs bound to it) | controller |
//! | `/havip/v1/vips/<vip>` | [`records::Vip`] | controller |
//! | `/havip/v1/addrs/<subnet>/<ip>` | [`records::Claim`]: `{"kind":"vip","id","name"}` or `{"kind":"port","id","vm"}` | controller |
//! | `/havip/v1/hosts/<host>/ports/<port>` | [`records::HostPort`]: the port's interface, MAC, fixed IPs and bound VIPs `[{id,address}]` | controller |
//! | `/havip/v1/schema` | [`records::SchemaVersion`]: `{"version":2}` | controller |
//! | `/havip/v1/reports/<host>/acks/<vip>` | [`records::Ack`]: `{"generation","result":"programmed"\|"failed","reason","at"}` | agent of `<host>` |
//! | `/havip/v1/reports/<host>/owners/<vip>` | [`records::Owner`]: `{"port","host","since"}`, and `"split_brain":{"ports","pending"}` while two bound ports claim the VIP within its hold-down; the VIP's owner is the newest report ([`owners::current_owner`]) | agent of `<host>` |
//! | `/havip/v1/limits/projects/<project>` | [`limits::ProjectLimits`] | controller (operator) |
//! | `/havip/v1/index/projects/<project>/<vip>` | `{}`: one per VIP of the project (the per-project quota counts them) | controller |
//! | `/havip/v1/index/subnets/<subnet>/<vip>` | `{}`: one per VIP of the subnet (the per-subnet quota) | controller |
//! | `/havip/v1/idempotency/<project>/<key>` | [`records::IdempotentCreate`], with a 24-hour lease | controller |
//! | `/havip/v1/ids/<subnets\|ports\|vips>` | [`records::IdCounter`]: the next datapath id of that kind | controller |
//! | `/havip/v1/eip-pools/<pool>` | [`records::EipPool`]: its gateway and address ranges | controller (operator) |
//! | `/havip/v1/eips/<eip>` | [`records::Eip`]: the public address, its pool's gateway, the associated HAVIP `{id,address,subnet,network}` | controller |
//! | `/havip/v1/eip-addrs/<pool>/<ip>` | [`records::EipClaim`]: the EIP holding that public address | controller |
//! | `/havip/v1/index/project-eips/<project>/<eip>` | `{}`: one per EIP of the project (its EIP quota counts them) | controller |
//! | `/havip/v1/vip-eips/<vip>` | [`records::VipEip`]: the EIP associated with the VIP (one per VIP) | controller |
//! | `/havip/v1/limits/project-eips/<project>` | [`records::EipLimits`] | controller (operator) |
//!
//! Subnets, ports and VIPs carry a `datapath_id` the controller allocates
//! (dense, never 0, never given twice); a VIP's bindings carry their
//! ports'. Hosts program them by it. A record written before ids were
//! allocated has none; agents then use the FNV-1a hash of its id, as
//! before, refusing a collision.
//!
//! IPv6 addresses in keys are in canonical RFC 5952 form (`fd00::1`).
//!
//! ## What a host agent does
//!
//! 1. Watch the prefix `/havip/v1/hosts/<host>/ports/`: each key is a local
//!    port (interface, MAC) and the VIPs (id, address) it may answer for. A
//!    VIP leaving a port's `vips` (unbind, delete) means unprogram it there.
//! 2. For each VIP id seen there, watch `/havip/v1/vips/<vip>`: `ports`
//!    lists every bound port with its VM and host (the other hosts are
//!    where remote owners live); `generation` is what to acknowledge.
//! 3. After programming generation `g` of a VIP, put
//!    `/havip/v1/reports/<host>/acks/<vip>` = `{"generation":g,"result":"programmed","at":...}`
//!    (or `"failed"` with a `reason`). The controller watches `/havip/v1/reports/`
//!    and moves the VIP to `available` once every bound host acked `g`, or
//!    to `failed` on any failure for `g`. Acks for older generations are
//!    ignored.
//! 4. When a local port becomes the VIP's master (e.g. it sent a GARP for
//!    the VIP), put `/havip/v1/reports/<host>/owners/<vip>` =
//!    `{"port","host","since"}`; watch `/havip/v1/reports/` to learn remote
//!    owners (the newest report wins: [`owners::current_owner`]). Guard the put with
//!    [`guards::vip_exists`] so a deleted VIP is not resurrected. While a
//!    split brain lasts (two bound ports claiming within the VIP's
//!    `hold_down_ms`), put it again with `split_brain` as it begins and
//!    without it when it clears.
//! 5. Check every record with the rules here ([`records::Vip::problem`],
//!    [`records::HostPort::problem`], [`records::Subnet::problem`]) and the
//!    ones only a host can check (an interface used twice on it, a VIP at a
//!    port's address); acknowledge a VIP that breaks one `failed` with the
//!    reason and keep everything else in force.
//!
//! The controller deletes every host's `acks/<vip>` and `owners/<vip>`
//! reports, the address claim and the index entries with the VIP.
//!
//! With etcd auth on (see README, "etcd security"), a host's user may read
//! the root and write only `reports/<host>/`.

pub mod addresses;
pub mod eips;
pub mod guards;
pub mod keys;
pub mod limits;
pub mod mac;
pub mod owners;
pub mod records;
pub mod rules;
pub mod tls;

pub use mac::Mac;

/// The layout version this code reads and writes (`schema`). Version 2
/// moved acks and owner reports under each host's `reports/<host>/`.
pub const SCHEMA_VERSION: u32 = 2;

/// A value that breaks a rule, and which rule (a sentence for people).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A stored value that cannot be read as the record its key holds.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a valid record: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The record `value`, as `T`.
pub fn decode<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, RecordError> {
    Ok(serde_json::from_slice(value)?)
}

/// Whether `value` is a good record for `key` (by the kind of key): it
/// decodes, and a VIP, subnet or host port holds to its rules. Keys outside
/// the layout are not the schema's and pass.
pub fn check_record(key: &str, value: &[u8]) -> Result<(), RecordError> {
    use keys::Key;
    use records::*;
    let problem = match Key::parse(key) {
        None => None,
        Some(Key::Vpc(_)) => decode::<Vpc>(value).map(|_| None)?,
        Some(Key::Subnet(_)) => decode::<Subnet>(value)?.problem(),
        Some(Key::Port(_)) => decode::<Port>(value).map(|_| None)?,
        Some(Key::Vip(_)) => decode::<Vip>(value)?.problem(),
        Some(Key::Addr { .. }) => decode::<Claim>(value).map(|_| None)?,
        Some(Key::HostPort { .. }) => decode::<HostPort>(value)?.problem(),
        Some(Key::Ack { .. }) => decode::<Ack>(value).map(|_| None)?,
        Some(Key::Owner { .. } | Key::V1Owner(_)) => decode::<Owner>(value).map(|_| None)?,
        Some(Key::V1Ack { .. }) => decode::<Ack>(value).map(|_| None)?,
        Some(Key::Schema) => decode::<SchemaVersion>(value).map(|_| None)?,
        Some(Key::OwnerEvent { .. }) => decode::<OwnerEvent>(value).map(|_| None)?,
        Some(Key::ProjectLimits(_)) => decode::<limits::ProjectLimits>(value)?
            .check()
            .err()
            .map(|e| e.0),
        Some(Key::ProjectVip { .. } | Key::SubnetVip { .. }) => {
            decode::<IndexEntry>(value).map(|_| None)?
        }
        Some(Key::Idempotency { .. }) => decode::<IdempotentCreate>(value).map(|_| None)?,
        Some(Key::Ids(_)) => decode::<IdCounter>(value).map(|_| None)?,
        Some(Key::EipPool(_)) => decode::<EipPool>(value)?.problem(),
        Some(Key::Eip(_)) => decode::<Eip>(value)?.problem(),
        Some(Key::EipAddr { .. }) => decode::<EipClaim>(value).map(|_| None)?,
        Some(Key::ProjectEip { .. }) => decode::<IndexEntry>(value).map(|_| None)?,
        Some(Key::VipEip(_)) => decode::<VipEip>(value).map(|_| None)?,
        Some(Key::EipLimits(_)) => decode::<EipLimits>(value)?
            .eips_per_project
            .and_then(|n| limits::check("eips_per_project", Some(n)).err())
            .map(|e| e.0),
    };
    match problem {
        Some(why) => Err(RecordError::Invalid(why)),
        None => Ok(()),
    }
}
