//! The control plane (`fedgate-control`) and the admin CLI (`fedctl`).
//!
//! Today this crate holds `fedctl`'s offline commands, which run the pure core
//! on files: `check`, `explain`, `snapshot` and `dns-forwarders`. The server, its stores and
//! the online commands arrive with the issues that describe them.
//!
//! Layout: [`files`] reads a federation from paths; [`render`] prints
//! diagnostics like a compiler; [`forwarders`] writes resolvers'
//! conditional-forwarder configuration; [`fedctl`] is the command line.
#![forbid(unsafe_code)]

pub mod admin_audit;
pub mod authz;
pub mod certs;
pub mod client;
pub mod fedctl;
pub mod files;
pub mod forwarders;
pub mod render;
pub mod server;
pub mod store;
