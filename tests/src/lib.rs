//! Shared helpers for the privileged tests and the lab.
