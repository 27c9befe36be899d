//! The end-to-end test kit (process harness, dev CA, namespace builder).
//! It grows with the edge and the control plane; today the end-to-end tests
//! of `fedctl` live beside it in control-plane/tests, where Cargo hands them
//! the binary's path.
#![forbid(unsafe_code)]
