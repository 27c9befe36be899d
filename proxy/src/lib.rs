//! The edge proxy, `fedgate-edge`.
//!
//! Not built yet: the overlay (QUIC and TLS over TCP), ingress listeners,
//! egress, split-horizon DNS and the control-plane client arrive with the
//! issues that describe them. Today the binary only parses its arguments.
#![forbid(unsafe_code)]
