//! `fedctl certs dev` on configs/south-east: the real binary writes a CA and
//! an identity for every edge, and openssl and `peer_cert` agree on them.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use federation::Federation;
use federation::identity::{Identity, peer_cert};
use jiff::Timestamp;

const TD: &str = "south-east.fedgate.example";

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/south-east")
}

fn federation() -> Federation {
    let sources = control_plane::files::read_sources(&[config()]).unwrap();
    #[allow(clippy::disallowed_methods)] // the binary under test reads the clock too
    let loaded = federation::load(&sources, Timestamp::now());
    loaded.federation.expect("configs/south-east is valid")
}

fn certs_dev(out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_fedctl"))
        .args(["certs", "dev", "--config"])
        .arg(config())
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fedctl certs dev failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn openssl(args: &[&str]) -> Output {
    match Command::new("openssl").args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "this test needs the `openssl` command, which is not installed; install it (`apt-get install -y openssl`) and run again"
        ),
        Err(e) => panic!("cannot run openssl: {e}"),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn der(pem_path: &Path) -> Vec<u8> {
    let text = std::fs::read(pem_path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    pem.contents
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn certs_dev_makes_a_verifiable_identity_for_every_edge() {
    let fed = federation();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    certs_dev(out);

    let ca = out.join("ca.pem");
    let edge_files = std::fs::read_dir(out.join("edges")).unwrap().count();
    assert_eq!(
        edge_files,
        2 * fed.edges.len(),
        "one .pem and .key per edge"
    );
    assert!(fed.edges.len() >= 6);

    for edge in &fed.edges {
        let cert = out.join(format!("edges/{}-{}.pem", edge.org, edge.name));
        let key = out.join(format!("edges/{}-{}.key", edge.org, edge.name));

        let verify = openssl(&["verify", "-CAfile", path_str(&ca), path_str(&cert)]);
        assert!(
            verify.status.success(),
            "openssl verify {}: {}{}",
            cert.display(),
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );

        let san = openssl(&[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            path_str(&cert),
        ]);
        let san = String::from_utf8_lossy(&san.stdout);
        let uri = format!("URI:spiffe://{TD}/org/{}/edge/{}", edge.org, edge.name);
        assert!(san.contains(&uri), "{}: {san}", cert.display());
        assert_eq!(fed.edge_identity(edge), uri["URI:".len()..]);

        let peer = peer_cert(&der(&cert), TD).unwrap();
        assert_eq!(
            peer.identity,
            Identity::Edge {
                org: edge.org.to_string(),
                name: edge.name.clone()
            }
        );
        assert_eq!(peer.identity.edge_id().as_deref(), Some(edge.id.as_str()));

        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }

    for org in &fed.orgs {
        let cert = out.join(format!("admins/{}-admin.pem", org.id));
        let peer = peer_cert(&der(&cert), TD).unwrap();
        assert_eq!(
            peer.identity,
            Identity::Admin {
                org: org.id.to_string(),
                name: "admin".into()
            }
        );
        assert_eq!(
            mode(&out.join(format!("admins/{}-admin.key", org.id))),
            0o600
        );
    }
    let control = peer_cert(&der(&out.join("control/control-1.pem")), TD).unwrap();
    assert_eq!(
        control.identity,
        Identity::Control {
            name: "control-1".into()
        }
    );
    assert_eq!(mode(&out.join("control/control-1.key")), 0o600);
    assert_eq!(mode(&out.join("ca.key")), 0o600);

    // A second run keeps the CA, and what it issues still verifies against it.
    let ca_before = std::fs::read(&ca).unwrap();
    let ca_key_before = std::fs::read(out.join("ca.key")).unwrap();
    certs_dev(out);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before);
    assert_eq!(std::fs::read(out.join("ca.key")).unwrap(), ca_key_before);
    let cert = out.join("edges/dpft-core.pem");
    let verify = openssl(&["verify", "-CAfile", path_str(&ca), path_str(&cert)]);
    assert!(verify.status.success(), "after the second run");
}
