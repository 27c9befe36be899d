//! The control plane (`fedgate-control`) and the admin CLI (`fedctl`).
//!
//! Today this crate holds `fedctl`'s offline commands, which run the pure core
//! on files: `check`, `explain` and `snapshot`. The server, its stores and
//! the online commands arrive with the issues that describe them.
//!
//! Layout: [`files`] reads a federation from paths; [`render`] prints
//! diagnostics like a compiler; [`fedctl`] is the command line.
#![forbid(unsafe_code)]

pub mod admin_audit;
pub mod authz;
pub mod certs;
pub mod fedctl;
pub mod files;
pub mod render;
pub mod server;
pub mod store;
