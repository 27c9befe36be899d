//! A CA rollover at the control plane without a restart, in the steps
//! docs/edge.md gives for the edges ("A new CA without a restart"), with the
//! real `fedgate-control`, `fedctl` and `openssl s_client`:
//! 1. both CAs in `--ca`: an admin whose certificate the new CA issued is
//!    served (refused at the handshake before);
//! 2. the replica's own certificate renewed from the new CA: a `fedctl`
//!    trusting only the new CA reaches it;
//! 3. the old CA taken out: a connection made before, with an old-CA
//!    certificate, is refused from its next request on (403, `untrusted`),
//!    and a new one at the handshake.
//!
//! A bundle under which the replica's own certificate is not valid is
//! refused, and the bundle in use stays.
//!
//! Then the whole federation through the same steps: both edges follow the
//! control plane through a rollover of every certificate, and take the
//! next version afterwards (their connections made with old-CA
//! certificates are closed and made again with the new ones).

mod kit;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use federation::identity::Identity;
use kit::*;
use tests::World;

/// Whether `fedctl ARGS` as `who`, trusting the CA certificates in `ca`,
/// succeeds.
fn served(w: &World, who: &(PathBuf, PathBuf), ca: &Path, args: &[&str]) -> bool {
    fedctl_trusting(w, who, ca, args).code == 0
}

/// One HTTP/1.1 connection held open through `openssl s_client`; what it
/// prints is gathered by a thread. Killed (by its handle) on drop.
struct Held {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Held {
    fn open(w: &World, who: &(PathBuf, PathBuf)) -> Self {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(control_addr(w).to_string())
            .arg("-cert")
            .arg(&who.0)
            .arg("-key")
            .arg(&who.1)
            .arg("-CAfile")
            .arg(w.ca_pem())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        // openssl's output, gathered by a thread into `out`.
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let gathered = out.clone();
        std::thread::spawn(move || {
            let mut stdout = stdout;
            let mut buf = [0u8; 4096];
            // Bounded: at most 10,000 reads, until openssl exits.
            for _ in 0..10_000 {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => gathered
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Self { child, out }
    }

    /// Ask for the history on the held connection; the status line of the
    /// answer (the `n`th answer on this connection) and all printed so far,
    /// once the answer's body has come too.
    fn history(&mut self, n: usize) -> (String, String) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"GET /v1/history HTTP/1.1\r\nHost: control\r\n\r\n")
            .expect("write request");
        stdin.flush().expect("flush");
        for _ in 0..500 {
            let text = self.out.lock().unwrap().clone();
            // A body ends without a newline: the next status line follows it.
            // Every answer of the API is a JSON object: whole once it ends in `}`.
            if let Some((at, _)) = text.match_indices("HTTP/1.1 ").nth(n - 1)
                && text[at..].ends_with('}')
            {
                let status = text[at..].lines().next().unwrap_or_default();
                return (status.to_owned(), text);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = self.out.lock().unwrap().clone();
        panic!("no answer {n} on the held connection:\n{text}");
    }
}

impl Held {
    /// Whether openssl exits (the replica closed the connection) within
    /// `limit`.
    fn closed_within(&mut self, limit: Duration) -> bool {
        let tries = limit.as_millis() / 20;
        for _ in 0..tries {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_ca_rollover_needs_no_restart_of_the_control_plane() {
    if !tests::require_tool("openssl") {
        return;
    }
    let w = World::new();
    let mut control = start_control(&w, &document(&w, "", false));
    let old_admin = w.admin(None);
    let new_ca = w.another_ca("rollover");
    let (cert, key, _) = w.issue_from(
        &new_ca,
        &Identity::federation_admin("nadia").expect("id"),
        "new-admin",
    );
    let new_admin = (cert, key);
    let old_ca_only = w.path("old-ca.pem");
    std::fs::write(&old_ca_only, w.ca_cert_pem()).expect("write");
    let new_ca_only = w.path("new-ca.pem");
    std::fs::write(&new_ca_only, new_ca.cert_pem()).expect("write");
    let bundle = format!("{}{}", w.ca_cert_pem(), new_ca.cert_pem());
    assert!(served(&w, &old_admin, &old_ca_only, &["history"]));
    assert!(
        !served(&w, &new_admin, &old_ca_only, &["history"]),
        "the new CA's admin is refused before the new CA is trusted"
    );

    // Step 1: both CAs.
    std::fs::write(w.ca_pem(), &bundle).expect("write bundle");
    control.wait_for_times("CA certificates replaced", 1, Duration::from_secs(10));
    assert!(
        served(&w, &new_admin, &old_ca_only, &["history"]),
        "the new CA's admin is served once both CAs are trusted:\n{}",
        control.log_text()
    );
    assert!(served(&w, &old_admin, &old_ca_only, &["history"]));
    let mut held = Held::open(&w, &old_admin);
    let (status, _) = held.history(1);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // Step 2: the replica's certificate renewed from the new CA.
    assert!(
        !served(&w, &old_admin, &new_ca_only, &["history"]),
        "the replica still presents its old-CA certificate"
    );
    w.issue_from(
        &new_ca,
        &Identity::control(tests::CONTROL_NAME).expect("id"),
        "control",
    );
    control.wait_for_times("certificate renewed", 1, Duration::from_secs(10));
    assert!(
        served(&w, &new_admin, &new_ca_only, &["history"]),
        "the replica presents its new-CA certificate:\n{}",
        control.log_text()
    );
    let (status, _) = held.history(2);
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "the held connection is still served under both CAs: {status}"
    );

    // Step 3: the old CA taken out.
    std::fs::write(w.ca_pem(), new_ca.cert_pem()).expect("write new CA");
    control.wait_for_times("CA certificates replaced", 2, Duration::from_secs(10));
    let (status, text) = held.history(3);
    assert!(
        status.starts_with("HTTP/1.1 403"),
        "the held old-CA connection is refused now: {text}"
    );
    assert!(text.contains("untrusted"), "{text}");
    assert!(
        held.closed_within(Duration::from_secs(5)),
        "the replica closes the connection after refusing it: {text}"
    );
    assert!(
        control
            .log_text()
            .contains("is untrusted under the CA certificates in use now"),
        "{}",
        control.log_text()
    );
    assert!(
        !served(&w, &old_admin, &new_ca_only, &["history"]),
        "a new old-CA connection is refused at the handshake"
    );
    assert!(served(&w, &new_admin, &new_ca_only, &["history"]));

    // A bundle without the replica's own CA is refused; the one in use stays.
    std::fs::write(w.ca_pem(), w.ca_cert_pem()).expect("write old CA");
    control.wait_for_times("new TLS material refused", 1, Duration::from_secs(10));
    assert!(
        control
            .log_text()
            .contains("the certificate is not valid now under the CA certificates given"),
        "{}",
        control.log_text()
    );
    assert!(
        served(&w, &new_admin, &new_ca_only, &["history"]),
        "the new CA stays trusted"
    );
    assert!(!served(&w, &old_admin, &new_ca_only, &["history"]));
}

#[test]
fn the_edges_follow_the_control_plane_through_a_ca_rollover() {
    let w = World::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(tests::echo_origin(addr(&w, 11, 7007)));
    rt.block_on(tests::echo_origin(addr(&w, 13, 7011)));
    let control = start_control(&w, &document(&w, "", false));
    let edges = start_edges(&w);
    let mut every = std::iter::once(control).chain(edges).collect::<Vec<_>>();
    tunnel(&w, "echo.home.example:7007").expect("echo open in version 1");
    let new_ca = w.another_ca("rollover");
    let (cert, key, _) = w.issue_from(
        &new_ca,
        &Identity::admin("home", "admin").expect("id"),
        "new-home-admin",
    );
    let home_admin = (cert, key);

    // 1. Both CAs everywhere (one file here: every party's --ca).
    std::fs::write(
        w.ca_pem(),
        format!("{}{}", w.ca_cert_pem(), new_ca.cert_pem()),
    )
    .expect("write bundle");
    for p in &mut every {
        p.wait_for_times("CA certificates replaced", 1, Duration::from_secs(10));
    }
    // 2. Every certificate renewed from the new CA.
    for org in ["home", "away"] {
        w.edge_cert_from(&new_ca, org, "edge", &format!("{org}-edge"), None, None);
    }
    w.issue_from(
        &new_ca,
        &Identity::control(tests::CONTROL_NAME).expect("id"),
        "control",
    );
    for p in &mut every {
        p.wait_for_times("certificate renewed", 1, Duration::from_secs(10));
    }
    // 3. The old CA out.
    std::fs::write(w.ca_pem(), new_ca.cert_pem()).expect("write new CA");
    for p in &mut every {
        p.wait_for_times("CA certificates replaced", 2, Duration::from_secs(10));
    }
    assert!(
        !every
            .iter()
            .any(|p| p.log_text().contains("new TLS material refused")),
        "every step was taken"
    );

    // The next version reaches both edges and takes effect.
    edit(&w, &document(&w, OPEN_SECRET, false));
    let applied = fedctl(
        &w,
        &home_admin,
        &["apply", "-f", "fed", "-m", "after the rollover"],
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    // every[1..]: the edges.
    for edge in &mut every[1..] {
        edge.wait_for_times("to=2", 1, Duration::from_secs(30));
    }
    tunnel(&w, "secret.home.example:7011").expect("secret open in version 2");
    tunnel(&w, "echo.home.example:7007").expect("echo still open");
}
