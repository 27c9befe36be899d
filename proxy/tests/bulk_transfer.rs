//! A 1 GiB transfer through both edges arrives intact: the SHA-256 of what
//! the client receives matches the origin's pattern.

mod common;

use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GIB: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_arrives_with_a_matching_checksum() {
    let w = World::new();
    tests::blob_origin(addr(&w, 12, 7009)).await;
    let doc = document(&w, &Options::default());
    let pair = start_pair(&w, &doc, &doc, &[]);
    // home/blob is the first remote TCP service by id: the prefix's first address.
    let vip = addr(&w, 129, 7009);
    let seed = 0x5eed_f00d;
    let expected = tokio::task::spawn_blocking(move || tests::pattern_digest(seed, GIB));
    let mut s = tokio::net::TcpStream::connect(vip)
        .await
        .expect("connect to the blob VIP");
    s.write_u64(GIB).await.unwrap();
    s.write_u64(seed).await.unwrap();
    // Nothing more to send: half-close, which the edges carry through.
    s.shutdown().await.unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let received = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            got += n as u64;
        }
    })
    .await;
    assert!(
        received.is_ok(),
        "1 GiB did not arrive in 5 minutes ({got} bytes)\n{}",
        pair.away.log_text()
    );
    assert_eq!(got, GIB, "byte count");
    let digest: [u8; 32] = hasher.finalize().into();
    assert_eq!(
        digest,
        expected.await.unwrap(),
        "checksum of 1 GiB through the overlay"
    );
    let r = audit_record(&w, "away", |r| r["service"] == "home/blob").await;
    assert_eq!(r["bytes_down"], GIB);
    assert_eq!(r["transport"], "quic");
}
