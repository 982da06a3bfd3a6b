//! The agent's connection to etcd, as a state: down (when to try again,
//! after how many failures in a row, with the client kept when only the
//! watch was lost) or watching this host's keys.

use std::time::{Duration, Instant};

use etcd_client::{Client, WatchStream};

/// How long to wait before reconnecting after etcd failed `failures` times
/// in a row.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(250 * u64::from(failures.clamp(1, 8)))
}

/// Where the agent stands with etcd.
pub enum Connection {
    /// Not watching: the next resync is due at `retry_at`.
    Down {
        /// Kept when etcd answered but the watch was lost (or a write
        /// failed); `None` after an etcd error: connect again.
        client: Option<Client>,
        /// Resyncs that failed in a row.
        failures: u32,
        retry_at: Instant,
    },
    /// Connected, and watching everything under the keys' root.
    Watching {
        client: Client,
        watch: Box<WatchStream>,
    },
}

impl Default for Connection {
    /// Down, with a resync due now.
    fn default() -> Self {
        Self::Down {
            client: None,
            failures: 0,
            retry_at: Instant::now(),
        }
    }
}

impl Connection {
    pub fn is_watching(&self) -> bool {
        matches!(self, Self::Watching { .. })
    }

    /// When the next resync is due (now, when watching).
    pub fn retry_at(&self) -> Instant {
        match self {
            Self::Down { retry_at, .. } => *retry_at,
            Self::Watching { .. } => Instant::now(),
        }
    }

    /// Resyncs that failed in a row (0 when watching).
    pub fn failures(&self) -> u32 {
        match self {
            Self::Down { failures, .. } => *failures,
            Self::Watching { .. } => 0,
        }
    }

    /// The client, if there is one (down with a kept client, or watching).
    pub fn client(&self) -> Option<&Client> {
        match self {
            Self::Down { client, .. } => client.as_ref(),
            Self::Watching { client, .. } => Some(client),
        }
    }

    /// The client, while watching: acknowledgements and owner reports go
    /// out only then (a resync sends them otherwise).
    pub fn watching_client(&self) -> Option<&Client> {
        match self {
            Self::Watching { client, .. } => Some(client),
            Self::Down { .. } => None,
        }
    }

    pub fn watch_mut(&mut self) -> Option<&mut WatchStream> {
        match self {
            Self::Watching { watch, .. } => Some(&mut **watch),
            Self::Down { .. } => None,
        }
    }

    /// A client just connected, kept while the resync goes on.
    pub fn connected(&mut self, new: Client) {
        if let Self::Down { client, .. } = self {
            *client = Some(new);
        }
    }

    /// The resync succeeded: watching.
    pub fn watching(&mut self, client: Client, watch: WatchStream) {
        *self = Self::Watching {
            client,
            watch: Box::new(watch),
        };
    }

    /// Stops watching: the next resync after `after`, the client kept
    /// unless `drop_client`, the failures in a row as they were.
    pub fn down(&mut self, drop_client: bool, after: Duration) {
        let (client, failures) = match std::mem::take(self) {
            Self::Down {
                client, failures, ..
            } => (client, failures),
            Self::Watching { client, .. } => (Some(client), 0),
        };
        *self = Self::Down {
            client: client.filter(|_| !drop_client),
            failures,
            retry_at: Instant::now() + after,
        };
    }

    /// A resync failed: one failure more in a row, and the next attempt
    /// after [`retry_delay`] of them. Returns (failures, delay).
    pub fn resync_failed(&mut self, drop_client: bool) -> (u32, Duration) {
        let failures = self.failures() + 1;
        let delay = retry_delay(failures);
        self.down(drop_client, delay);
        if let Self::Down { failures: f, .. } = self {
            *f = failures;
        }
        (failures, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_lengthen_the_wait_up_to_two_seconds() {
        let mut c = Connection::default();
        assert!(!c.is_watching() && c.client().is_none());
        let waits: Vec<(u32, Duration)> = (0..10).map(|_| c.resync_failed(true)).collect();
        assert_eq!(waits[0], (1, Duration::from_millis(250)));
        assert_eq!(waits[3], (4, Duration::from_millis(1000)));
        assert_eq!(waits[9], (10, Duration::from_millis(2000)));
        assert!(c.retry_at() > Instant::now());
        // Going down for another reason keeps the count.
        c.down(false, Duration::ZERO);
        assert_eq!(c.failures(), 10);
        assert!(c.retry_at() <= Instant::now());
    }
}
