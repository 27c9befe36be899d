//! `fedctl history` and `fedctl rollback` against a real control plane with
//! two real edges: a rollback is a new version with an earlier document,
//! shown by object and followed to every edge, and it takes effect.

mod kit;

use kit::*;
use tests::World;

#[test]
fn rollback_restores_an_earlier_document_on_every_edge() {
    let w = World::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(tests::echo_origin(addr(&w, 13, 7011)));
    let _control = start_control(&w, &document(&w, "", false));
    let _edges = start_edges(&w);
    let home = w.admin(Some("home"));

    edit(&w, &document(&w, OPEN_SECRET, false));
    let applied = fedctl(&w, &home, &["apply", "-f", "fed", "-m", "open secret"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    tunnel(&w, "secret.home.example:7011").expect("open in version 2");

    let history = fedctl(&w, &home, &["history"]);
    assert_eq!(history.code, 0, "{history:?}");
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert!(lines[0].starts_with("VERSION"), "{history:?}");
    assert!(
        lines[1].starts_with("2 ")
            && lines[1].contains("admin home/admin")
            && lines[1].contains("open secret"),
        "{history:?}"
    );
    // The time says its zone: `2026-11-25T15:04:05Z`.
    let time = lines[1].split_whitespace().nth(1).unwrap_or_default();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.parse::<jiff::Timestamp>().is_ok(),
        "{history:?}"
    );
    assert!(
        lines[2].starts_with("1 ") && lines[2].contains("initial version"),
        "{history:?}"
    );

    let unknown = fedctl(&w, &home, &["rollback", "9"]);
    assert_eq!(unknown.code, 3, "{unknown:?}");
    assert!(
        unknown.stderr.contains("there is no version 9"),
        "{unknown:?}"
    );

    let rolled = fedctl(
        &w,
        &home,
        &["rollback", "1", "-m", "close it again", "--timeout", "20"],
    );
    assert_eq!(rolled.code, 0, "{rolled:?}");
    assert!(
        rolled.stdout.contains("- policy home-opens-secret"),
        "{rolled:?}"
    );
    assert!(rolled.stdout.contains("applied as version 3"), "{rolled:?}");
    assert!(
        rolled
            .stdout
            .contains("rollout complete: 2/2 edges run version 3"),
        "{rolled:?}"
    );
    assert!(
        tunnel(&w, "secret.home.example:7011").is_err(),
        "closed again"
    );

    let json = fedctl(&w, &home, &["history", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v[0]["version"], 3);
    assert_eq!(v[0]["rollback_of"], 1);
    assert_eq!(v[0]["message"], "close it again");
    let yaml = fedctl(&w, &home, &["history", "-o", "yaml"]);
    assert!(yaml.stdout.contains("rollback_of: 1"), "{yaml:?}");
}
