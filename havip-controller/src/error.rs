//! The one error type of the API: a stable machine-readable code and a human
//! message. The HTTP layer turns it into `{"error":{"code":..,"message":..}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable error codes. Clients match on these; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A field is missing, malformed or contradicts another one.
    InvalidArgument,
    /// The requested address is not a usable host address of the subnet.
    AddressOutOfRange,
    /// The requested address is held by a port or another VIP.
    AddressInUse,
    /// The subnet has no free address left.
    SubnetExhausted,
    /// A limit (ports per VIP, VIPs per port) would be exceeded.
    QuotaExceeded,
    /// A port is in another VPC or subnet than the VIP.
    PortInOtherSubnet,
    /// The resource is in a state that does not allow the operation.
    WrongState,
    /// No such resource (or it belongs to another project).
    NotFound,
    /// No or an unknown bearer token.
    Unauthenticated,
    /// The token is valid but may not do this.
    Forbidden,
    /// The resource already exists differently, or concurrent changes kept
    /// winning; retry.
    Conflict,
    /// The store (etcd) cannot be reached.
    Unavailable,
    /// The request body is larger than the API takes.
    PayloadTooLarge,
    /// A stored record the operation needs cannot be read; an operator
    /// must repair it (`GET /v1/records/corrupt` lists them).
    CorruptRecord,
    /// An EIP and a HAVIP (or an address and a pool) of two IP versions.
    IpVersionMismatch,
    /// The EIP pool has no free address of that IP version left.
    PoolExhausted,
    /// The EIP or the HAVIP is associated already (one EIP per HAVIP).
    AlreadyAssociated,
    /// A bug or corrupt stored data.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument
            | ErrorCode::AddressOutOfRange
            | ErrorCode::PortInOtherSubnet
            | ErrorCode::IpVersionMismatch => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AddressInUse
            | ErrorCode::SubnetExhausted
            | ErrorCode::QuotaExceeded
            | ErrorCode::WrongState
            | ErrorCode::Conflict
            | ErrorCode::CorruptRecord
            | ErrorCode::PoolExhausted
            | ErrorCode::AlreadyAssociated => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::AddressOutOfRange => "address_out_of_range",
            ErrorCode::AddressInUse => "address_in_use",
            ErrorCode::SubnetExhausted => "subnet_exhausted",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::PortInOtherSubnet => "port_in_other_subnet",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::CorruptRecord => "corrupt_record",
            ErrorCode::IpVersionMismatch => "ip_version_mismatch",
            ErrorCode::PoolExhausted => "pool_exhausted",
            ErrorCode::AlreadyAssociated => "already_associated",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error: what went wrong (`code`) and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, ToSchema)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: Error,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! ctor {
    ($($name:ident => $code:ident),* $(,)?) => {
        impl Error {
            $(
                pub fn $name(message: impl Into<String>) -> Self {
                    Error { code: ErrorCode::$code, message: message.into() }
                }
            )*
        }
    };
}

ctor! {
    invalid_argument => InvalidArgument,
    address_out_of_range => AddressOutOfRange,
    address_in_use => AddressInUse,
    subnet_exhausted => SubnetExhausted,
    quota_exceeded => QuotaExceeded,
    port_in_other_subnet => PortInOtherSubnet,
    wrong_state => WrongState,
    not_found => NotFound,
    unauthenticated => Unauthenticated,
    forbidden => Forbidden,
    conflict => Conflict,
    unavailable => Unavailable,
    payload_too_large => PayloadTooLarge,
    corrupt_record => CorruptRecord,
    ip_version_mismatch => IpVersionMismatch,
    pool_exhausted => PoolExhausted,
    already_associated => AlreadyAssociated,
    internal => Internal,
}

/// etcd's own words stay in the log: an API error names no key and no
/// internal.
impl From<etcd_client::Error> for Error {
    fn from(e: etcd_client::Error) -> Self {
        log::warn!("etcd: {e}");
        Error::unavailable("the store is unavailable; try again")
    }
}

impl From<havip_schema::Invalid> for Error {
    fn from(e: havip_schema::Invalid) -> Self {
        Error::invalid_argument(e.0)
    }
}

impl From<havip_schema::addresses::AddressError> for Error {
    fn from(e: havip_schema::addresses::AddressError) -> Self {
        Error::address_out_of_range(e.to_string())
    }
}
