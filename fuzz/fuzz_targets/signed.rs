//! What an edge reads from the control plane (or from a snapshot file): a
//! signed snapshot or a signed header. Untrusted bytes must never panic
//! the verifier, and any snapshot that reads, once signed, must verify
//! with its signer's key, and only with it.
#![no_main]

use std::sync::OnceLock;

use federation::EdgeSnapshot;
use federation::signed::{SignedHeader, SignedSnapshot, SigningKey, TrustedKey};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (SigningKey, TrustedKey) {
    static KEYS: OnceLock<(SigningKey, TrustedKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = || {
            let der = SigningKey::generate_pkcs8().expect("key");
            SigningKey::from_pkcs8(&der).expect("key reads")
        };
        (signer(), signer().public())
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, other) = keys();
    let trusted = key.public();
    let _ = SignedSnapshot::verify(data, &trusted);
    if let Ok(header) = SignedHeader::verify(data, &trusted) {
        if let Ok(snap) = EdgeSnapshot::from_json(data) {
            let _ = header.complete(&snap);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TrustedKey::from_text(text);
    }
    if let Ok(snap) = EdgeSnapshot::from_json(data) {
        let signed = key.sign(&snap).to_json();
        let verified = SignedSnapshot::verify(&signed, &trusted);
        // A snapshot whose digest is not its content's verifies as
        // altered; every other verifies, the same snapshot back.
        if snap.check().is_ok() {
            let back = verified.expect("signed by the trusted key");
            let json = |s: &EdgeSnapshot| serde_json::to_vec(s).expect("serialises");
            assert_eq!(json(&back), json(&snap));
        }
        assert!(SignedSnapshot::verify(&signed, other).is_err());
    }
});
