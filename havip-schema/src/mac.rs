//! A MAC address as records hold it: six bytes, written `aa:bb:cc:dd:ee:ff`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Invalid;

/// An Ethernet MAC address; in JSON the lower-case `aa:bb:cc:dd:ee:ff` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// What keeps it from being a port's MAC: all zero, or a group address.
    pub fn unicast_problem(&self) -> Option<String> {
        if self.0 == [0; 6] {
            Some(format!("mac {self} is all zero, not a port's MAC address"))
        } else if self.0[0] & 1 == 1 {
            Some(format!(
                "mac {self} is a multicast (group) MAC address, not a port's"
            ))
        } else {
            None
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = Invalid;
    /// `aa:bb:cc:dd:ee:ff`, hex, lower or upper case.
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let bad = || Invalid(format!("mac {s:?} is not of the form aa:bb:cc:dd:ee:ff"));
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form() {
        let m: Mac = "52:54:00:AB:cd:01".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:01");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"52:54:00:ab:cd:01\"");
        for bad in [
            "52:54:00:ab:cd",
            "52-54-00-ab-cd-01",
            "zz:54:00:ab:cd:01",
            "52:54:00:ab:cd:01:02",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
            assert!(serde_json::from_str::<Mac>(&format!("\"{bad}\"")).is_err());
        }
        assert!(Mac([0; 6]).unicast_problem().unwrap().contains("all zero"));
        assert!(Mac([1, 0, 0x5e, 0, 0, 1])
            .unicast_problem()
            .unwrap()
            .contains("multicast"));
        assert_eq!(m.unicast_problem(), None);
    }
}
