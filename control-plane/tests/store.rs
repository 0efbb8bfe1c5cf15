//! The store's behaviour suite, run on SQLite and on PostgreSQL.

#[macro_use]
mod support;

use serde_json::json;
use switchyard_control_plane::model::{Kind, Reference};
use switchyard_control_plane::store::{Change, Expect, Store, StoreError};

on_both_stores!(
    put_get_list_delete,
    every_write_is_a_revision,
    preconditions,
    references_are_enforced,
    multi_change_write_is_atomic,
    config_at_and_changes_since,
    rollback_restores_a_revision,
    data_survives_reconnect,
    api_keys_bump_the_consumer_and_are_never_rolled_back,
    concurrent_writes_all_land_with_distinct_revisions,
);

fn cluster_ref(field: &str, name: &str) -> Reference {
    Reference {
        field: field.to_owned(),
        kind: Kind::Cluster,
        name: name.to_owned(),
    }
}

async fn put_cluster(store: &Store, name: &str, port: u16) -> i64 {
    store
        .put(
            Kind::Cluster,
            name,
            json!({"endpoints": [{"address": format!("127.0.0.1:{port}")}]}),
            vec![],
            Expect::Any,
            "test",
        )
        .await
        .unwrap()
        .resource
        .version
}

async fn put_route(store: &Store, name: &str, cluster: &str) -> Result<i64, StoreError> {
    store
        .put(
            Kind::Route,
            name,
            json!({"match": {"path_prefix": "/"}, "cluster": cluster}),
            vec![cluster_ref("cluster", cluster)],
            Expect::Any,
            "test",
        )
        .await
        .map(|w| w.resource.version)
}

async fn put_get_list_delete(store: Store) {
    assert!(store.list(Kind::Cluster).await.unwrap().is_empty());
    let v1 = put_cluster(&store, "b", 1).await;
    let v2 = put_cluster(&store, "a", 2).await;
    assert!(v2 > v1);
    let names: Vec<String> = store
        .list(Kind::Cluster)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let got = store.get(Kind::Cluster, "a").await.unwrap().unwrap();
    assert_eq!(got.version, v2);
    assert_eq!(got.spec["endpoints"][0]["address"], "127.0.0.1:2");
    assert!(store.get(Kind::Route, "a").await.unwrap().is_none());

    let v3 = put_cluster(&store, "a", 3).await;
    assert!(v3 > v2, "a replace bumps the version");
    store
        .delete(Kind::Cluster, "a", Expect::Any, "test")
        .await
        .unwrap();
    assert!(store.get(Kind::Cluster, "a").await.unwrap().is_none());
    assert!(matches!(
        store.delete(Kind::Cluster, "a", Expect::Any, "test").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn every_write_is_a_revision(store: Store) {
    let mut head = store.subscribe();
    assert_eq!(*head.borrow_and_update(), 0);
    put_cluster(&store, "c", 1).await;
    put_route(&store, "r", "c").await.unwrap();
    assert!(head.has_changed().unwrap());
    assert_eq!(*head.borrow(), 2);
    let revisions = store.revisions(10, None).await.unwrap();
    assert_eq!(revisions.len(), 2);
    assert_eq!(revisions[0].number, 2, "newest first");
    assert_eq!(revisions[0].actor, "test");
    assert_eq!(revisions[0].changes[0].op, "create");
    assert_eq!(revisions[0].changes[0].kind, "routes");
    assert_eq!(revisions[0].changes[0].name, "r");
    assert_eq!(store.revisions(10, Some(2)).await.unwrap().len(), 1);
    assert!(store.revision(2).await.unwrap().is_some());
    assert!(store.revision(3).await.unwrap().is_none());
}

async fn preconditions(store: Store) {
    let v = put_cluster(&store, "c", 1).await;
    let spec = json!({"endpoints": []});
    let err = store
        .put(
            Kind::Cluster,
            "c",
            spec.clone(),
            vec![],
            Expect::Absent,
            "t",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    let err = store
        .put(
            Kind::Cluster,
            "c",
            spec.clone(),
            vec![],
            Expect::Version(v + 10),
            "t",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::VersionMismatch { current: Some(c), .. } if c == v),
        "{err:?}"
    );
    let ok = store
        .put(Kind::Cluster, "c", spec, vec![], Expect::Version(v), "t")
        .await
        .unwrap();
    assert!(ok.resource.version > v);
    assert!(!ok.created, "a replace is not a creation");
    let err = store
        .delete(Kind::Cluster, "c", Expect::Version(v), "t")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { .. }), "{err:?}");
    assert_eq!(
        store.revisions(10, None).await.unwrap().len(),
        2,
        "rejected writes record nothing"
    );
}

async fn references_are_enforced(store: Store) {
    let err = put_route(&store, "r", "missing").await.unwrap_err();
    match err {
        StoreError::MissingReferences(refs) => {
            assert_eq!(refs, [cluster_ref("cluster", "missing")])
        }
        other => panic!("{other:?}"),
    }
    put_cluster(&store, "c", 1).await;
    put_route(&store, "r", "c").await.unwrap();
    match store.delete(Kind::Cluster, "c", Expect::Any, "t").await {
        Err(StoreError::InUse { used_by, .. }) => assert_eq!(used_by, ["routes/r"]),
        other => panic!("{other:?}"),
    }
    // Re-pointing the route releases the cluster.
    put_cluster(&store, "d", 2).await;
    put_route(&store, "r", "d").await.unwrap();
    store
        .delete(Kind::Cluster, "c", Expect::Any, "t")
        .await
        .unwrap();
}

async fn multi_change_write_is_atomic(store: Store) {
    // A route and its cluster in one write, in either order.
    let revision = store
        .apply(
            vec![
                Change::Put {
                    kind: Kind::Route,
                    name: "r".into(),
                    spec: json!({"cluster": "c"}),
                    refs: vec![cluster_ref("cluster", "c")],
                    expect: Expect::Absent,
                },
                Change::Put {
                    kind: Kind::Cluster,
                    name: "c".into(),
                    spec: json!({"endpoints": []}),
                    refs: vec![],
                    expect: Expect::Absent,
                },
            ],
            "t",
        )
        .await
        .unwrap();
    assert_eq!(revision.changes.len(), 2);
    // A failing second change leaves the first unwritten.
    let err = store
        .apply(
            vec![
                Change::Put {
                    kind: Kind::Cluster,
                    name: "new".into(),
                    spec: json!({}),
                    refs: vec![],
                    expect: Expect::Any,
                },
                Change::Delete {
                    kind: Kind::Cluster,
                    name: "c".into(),
                    expect: Expect::Any,
                },
            ],
            "t",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    assert!(store.get(Kind::Cluster, "new").await.unwrap().is_none());
    assert_eq!(store.revisions(10, None).await.unwrap().len(), 1);
}

async fn config_at_and_changes_since(store: Store) {
    put_cluster(&store, "c", 1).await; // 1
    put_route(&store, "r", "c").await.unwrap(); // 2
    put_cluster(&store, "c", 2).await; // 3
    store
        .delete(Kind::Route, "r", Expect::Any, "t")
        .await
        .unwrap(); // 4

    let at2 = store.config_at(2).await.unwrap();
    assert_eq!(at2.len(), 2);
    let c = at2.iter().find(|r| r.kind == Kind::Cluster).unwrap();
    assert_eq!(c.spec["endpoints"][0]["address"], "127.0.0.1:1");
    assert_eq!(c.version, 1);
    let at4 = store.config_at(4).await.unwrap();
    assert_eq!(at4.len(), 1);
    assert_eq!(at4[0].spec["endpoints"][0]["address"], "127.0.0.1:2");
    assert!(store.config_at(0).await.unwrap().is_empty());
    assert!(matches!(
        store.config_at(99).await,
        Err(StoreError::RevisionNotFound(99))
    ));

    let changes = store.changes_since(2, 4).await.unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let cluster = changes.iter().find(|c| c.kind == Kind::Cluster).unwrap();
    assert_eq!(cluster.value.as_ref().unwrap().version, 3);
    let route = changes.iter().find(|c| c.kind == Kind::Route).unwrap();
    assert!(route.value.is_none(), "deleted");
    assert!(store.changes_since(4, 4).await.unwrap().is_empty());
}

async fn rollback_restores_a_revision(store: Store) {
    put_cluster(&store, "c", 1).await; // 1
    put_route(&store, "r", "c").await.unwrap(); // 2
    store
        .delete(Kind::Route, "r", Expect::Any, "t")
        .await
        .unwrap(); // 3
    put_cluster(&store, "c", 9).await; // 4
    put_cluster(&store, "extra", 5).await; // 5
    let revision = store.rollback(2, "admin").await.unwrap();
    assert_eq!(revision.number, 6);
    assert_eq!(revision.rollback_of, Some(2));
    let now = store.list_all().await.unwrap();
    let specs: Vec<_> = now.iter().map(|r| (r.kind, r.name.as_str())).collect();
    assert_eq!(specs, [(Kind::Cluster, "c"), (Kind::Route, "r")]);
    assert_eq!(now[0].spec["endpoints"][0]["address"], "127.0.0.1:1");
    // The restored route's reference is enforced again.
    assert!(matches!(
        store.delete(Kind::Cluster, "c", Expect::Any, "t").await,
        Err(StoreError::InUse { .. })
    ));
    assert!(matches!(
        store.rollback(42, "admin").await,
        Err(StoreError::RevisionNotFound(42))
    ));
}

async fn data_survives_reconnect(store: Store) {
    put_cluster(&store, "c", 1).await;
    let url = store.url().to_owned();
    drop(store);
    let again = Store::connect(&url).await.unwrap();
    assert!(again.get(Kind::Cluster, "c").await.unwrap().is_some());
    assert_eq!(
        *again.subscribe().borrow(),
        1,
        "revision head is read at start"
    );
}

async fn api_keys_bump_the_consumer_and_are_never_rolled_back(store: Store) {
    let create = |id: &str| Change::CreateKey {
        consumer: "alice".into(),
        id: id.into(),
        sha256: "ab".repeat(32),
    };
    assert!(matches!(
        store.apply(vec![create("k1")], "t").await,
        Err(StoreError::NotFound { .. })
    ));
    let v1 = store
        .put(
            Kind::Consumer,
            "alice",
            json!({"scopes": ["read"]}),
            vec![],
            Expect::Any,
            "t",
        )
        .await
        .unwrap()
        .resource
        .version; // 1
    let revision = store.apply(vec![create("k1")], "t").await.unwrap(); // 2
    assert_eq!(revision.changes[0].op, "create_key");
    let alice = store.get(Kind::Consumer, "alice").await.unwrap().unwrap();
    assert!(alice.version > v1, "a new key re-versions the consumer");
    assert_eq!(alice.spec, json!({"scopes": ["read"]}));
    let changes = store.changes_since(1, 2).await.unwrap();
    assert_eq!(changes.len(), 1, "the consumer streams again");
    store.apply(vec![create("k2")], "t").await.unwrap(); // 3
    let keys = store.keys(Some("alice")).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    assert_eq!(keys[0].sha256, "ab".repeat(32));

    store
        .apply(
            vec![Change::RevokeKey {
                consumer: "alice".into(),
                id: "k1".into(),
            }],
            "t",
        )
        .await
        .unwrap(); // 4
    assert!(matches!(
        store
            .apply(
                vec![Change::RevokeKey {
                    consumer: "alice".into(),
                    id: "k1".into()
                }],
                "t"
            )
            .await,
        Err(StoreError::KeyNotFound { .. })
    ));
    // Rolling back to when k1 existed does not bring it back.
    store.rollback(2, "t").await.unwrap();
    let ids: Vec<String> = store
        .keys(None)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["k2"]);
    // Deleting the consumer deletes its keys.
    store
        .delete(Kind::Consumer, "alice", Expect::Any, "t")
        .await
        .unwrap();
    assert!(store.keys(None).await.unwrap().is_empty());
}

async fn concurrent_writes_all_land_with_distinct_revisions(store: Store) {
    put_cluster(&store, "c", 1).await;
    // Refused writes (missing references) interleaved with good ones must not block them.
    let writes = (0..20).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            if i % 4 == 0 {
                put_route(&store, &format!("bad-{i}"), "missing")
                    .await
                    .unwrap_err();
                None
            } else {
                Some(put_route(&store, &format!("r-{i}"), "c").await.unwrap())
            }
        })
    });
    let mut versions = Vec::new();
    for write in writes {
        versions.extend(write.await.unwrap());
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 15);
    assert_eq!(store.revisions(100, None).await.unwrap().len(), 16);
}
