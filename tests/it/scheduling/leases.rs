//! Leases in each kind of state store: a local folder, and a bucket on an S3-protocol server
//! on loopback, where the conditional put (If-None-Match) is what makes a lease exclusive.
//! Time is a manual clock, so expiry is checked at exact instants.

use std::collections::BTreeMap;
use std::time::Duration;

use object_store::ObjectStoreExt;
use segflow::clock::{Clock, ManualClock};
use segflow::lease::Leases;
use segflow::storage::{Location, Storage};

use crate::support::s3::{KEY, SECRET, start_s3};

const TTL: Duration = Duration::from_secs(30);

/// One holder at a time; renewal keeps the lease; an expired lease is taken over and its old
/// holder's renewal refused; a released lease is free at once.
async fn holders_take_turns(storage: Storage, state: Location) {
    let clock = ManualClock::starting_at("2030-03-06T02:00:00Z".parse().unwrap());
    let daemon = |name: &str| {
        Leases::new(
            storage.clone(),
            &state,
            name.to_string(),
            TTL,
            Clock::Manual(clock.clone()),
        )
    };
    let (a, b, c) = (daemon("a"), daemon("b"), daemon("c"));

    let mut held = a.acquire("p").await.unwrap().expect("the lease is free");
    assert!(held.taken_over().is_none(), "nobody held it before");
    assert!(b.acquire("p").await.unwrap().is_none(), "a holds it");
    assert!(
        b.acquire("q").await.unwrap().is_some(),
        "other pipelines are free"
    );
    clock.advance(Duration::from_secs(20));
    assert!(held.renew().await.unwrap());
    clock.advance(Duration::from_secs(20));
    assert!(
        b.acquire("p").await.unwrap().is_none(),
        "renewed at 20 s, it holds until 50 s"
    );

    // a stalls past its expiry: b takes over, and a learns it lost the lease.
    clock.advance(Duration::from_secs(11));
    let taken = b.acquire("p").await.unwrap().expect("expired");
    let from = taken.taken_over().expect("a let it expire: a takeover");
    assert_eq!(from.pid, std::process::id());
    assert!(!held.renew().await.unwrap(), "a lost the lease");
    assert!(c.acquire("p").await.unwrap().is_none(), "b holds it now");
    taken.release().await.unwrap();
    let after_release = c.acquire("p").await.unwrap();
    let after_release = after_release.expect("free as soon as it is released");
    assert!(
        after_release.taken_over().is_none(),
        "given up, not taken over"
    );

    // A record of an older version, which did not say whether it was given up: an expired
    // one is free, and its take is not counted as a takeover.
    let legacy = state.join("leases/old/00000000000000000001.json");
    let record = r#"{"holder":"gone","epoch":1,"expires_at":"2030-03-06T01:00:00Z"}"#;
    storage
        .store(&legacy, &BTreeMap::new())
        .unwrap()
        .put(&legacy.path(), record.as_bytes().to_vec().into())
        .await
        .unwrap();
    let taken = a
        .acquire("old")
        .await
        .unwrap()
        .expect("expired an hour ago");
    assert!(taken.taken_over().is_none());
}

#[tokio::test]
async fn leases_in_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let state = Location::parse(&format!("{}/state/", dir.path().display())).unwrap();
    holders_take_turns(Storage::new(), state.clone()).await;

    // Daemons racing for a free lease: exactly one wins.
    let clock = Clock::Manual(ManualClock::starting_at(
        "2030-03-06T02:00:00Z".parse().unwrap(),
    ));
    let racers = (0..8).map(|n| {
        let leases = Leases::new(
            Storage::new(),
            &state,
            format!("racer-{n}"),
            TTL,
            clock.clone(),
        );
        async move { leases.acquire("raced").await.unwrap() }
    });
    let won = futures::future::join_all(racers)
        .await
        .into_iter()
        .flatten()
        .count();
    assert_eq!(won, 1);

    // Something else wrote the newest epoch: it counts as expired and the next one replaces it.
    let folder = dir.path().join("state/leases/garbled");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(format!("{:020}.json", 7)), "not a lease").unwrap();
    let leases = Leases::new(Storage::new(), &state, "d".to_string(), TTL, clock);
    assert!(leases.acquire("garbled").await.unwrap().is_some());
    assert!(folder.join(format!("{:020}.json", 8)).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_in_an_s3_bucket() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let addr = start_s3(root.path()).await;
    let storage = Storage::new();
    let state = Location::parse("s3://lake/state/").unwrap();
    let options: BTreeMap<String, String> = [
        ("aws_endpoint", format!("http://{addr}")),
        ("aws_allow_http", "true".to_string()),
        ("aws_access_key_id", KEY.to_string()),
        ("aws_secret_access_key", SECRET.to_string()),
        ("aws_region", "us-east-1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // The first use of a bucket sets up its store, as a source's `options` would.
    storage.store(&state, &options).unwrap();
    holders_take_turns(storage, state).await;
    let epochs = std::fs::read_dir(root.path().join("lake/state/leases/p"))
        .unwrap()
        .count();
    assert!(epochs >= 4, "the lease epochs are objects in the bucket");
}
