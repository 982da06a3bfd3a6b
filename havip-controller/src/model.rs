//! Everything the API speaks: its views ([`crate::views`]), its requests
//! ([`crate::requests`]), and the stored records' enums they share with
//! the schema.

pub use crate::eip_model::*;
pub use crate::requests::*;
pub use crate::views::*;
pub use havip_schema::records::{Ack, AckResult, Claim, HostPort, IpVersion, NetworkType, Status};
