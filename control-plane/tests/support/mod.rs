//! Shared by the test files that include it with `mod support;`; each uses
//! only part of it.
#![allow(dead_code)]

pub(crate) mod etcd;
