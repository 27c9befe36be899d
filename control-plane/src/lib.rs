//! The control plane (`fedgate-control`) and the admin CLI (`fedctl`).
//!
//! Layout: [`server`] is `fedgate-control`'s API over mutual TLS, on a
//! [`store`] (embedded or etcd), with [`authz`] (who may change what) and
//! [`admin_audit`]; [`client`] is the small mutual-TLS HTTP client `fedctl`
//! talks to it with; [`fedctl`] is the command line (offline commands on the
//! pure core, online commands, the firewall plan and the demo); [`files`]
//! reads a federation from paths; [`render`] prints diagnostics like a
//! compiler; [`forwarders`] writes resolvers' conditional-forwarder
//! configuration; [`certs`] makes development certificates; [`metrics`] is
//! the replica's monitoring listener.
#![forbid(unsafe_code)]

pub mod admin_audit;
pub mod anchors;
pub mod authz;
pub mod certs;
pub mod client;
pub mod credentials;
pub mod fedctl;
pub mod files;
pub mod forwarders;
pub mod metrics;
pub mod render;
pub mod server;
pub mod service;
pub mod store;
