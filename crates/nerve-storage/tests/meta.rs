//! The local metadata store: topics, configs and producer ids survive a restart; bad input is refused.

use std::collections::BTreeMap;

use nerve_storage::{
    LocalMetaStore, MetaStore, StorageError, StoredAcl, StoredScramCredential, TopicMeta,
};

fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> TopicMeta {
    TopicMeta {
        name: name.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test]
async fn topics_and_their_configs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let orders = topic("orders", 3, &[("cleanup.policy", "compact")]);
    meta.create_topic(orders.clone()).await.unwrap();
    meta.create_topic(topic("payments.v1", 1, &[]))
        .await
        .unwrap();
    meta.set_topic_configs(
        "payments.v1",
        BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
    )
    .await
    .unwrap();
    meta.set_partition_count("orders", 6).await.unwrap();
    drop(meta);

    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let reopened = meta.topic("orders").unwrap();
    assert_eq!((reopened.id, reopened.partitions), (orders.id, 6));
    assert_eq!(
        reopened.configs.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        meta.topic("payments.v1")
            .unwrap()
            .configs
            .get("retention.ms")
            .map(String::as_str),
        Some("1000")
    );
    assert_eq!(meta.topics().len(), 2);
}

#[tokio::test]
async fn invalid_names_configs_and_duplicates_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    meta.create_topic(topic("ok", 1, &[])).await.unwrap();
    for name in ["", ".", "..", "has space", "slash/name", &"x".repeat(250)] {
        assert!(
            matches!(
                meta.create_topic(topic(name, 1, &[])).await,
                Err(StorageError::InvalidTopic { .. })
            ),
            "{name:?} was accepted"
        );
    }
    assert!(matches!(
        meta.create_topic(topic("bad-config", 1, &[("retention.ms", "soon")]))
            .await,
        Err(StorageError::InvalidConfig { .. })
    ));
    assert!(matches!(
        meta.create_topic(topic("ok", 1, &[])).await,
        Err(StorageError::TopicAlreadyExists(_))
    ));
    assert!(matches!(
        meta.set_topic_configs(
            "ok",
            BTreeMap::from([("fsync".to_string(), "maybe".to_string())])
        )
        .await,
        Err(StorageError::InvalidConfig { .. })
    ));
    assert!(
        meta.set_partition_count("ok", 1).await.is_err(),
        "partitions never shrink"
    );
    assert!(matches!(
        meta.delete_topic("missing").await,
        Err(StorageError::UnknownTopicOrPartition(_))
    ));
    assert_eq!(meta.topics().len(), 1);
    assert!(meta.topic("ok").unwrap().configs.is_empty());
}

#[tokio::test]
async fn a_deleted_topic_is_gone_and_a_recreated_one_has_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let first = topic("t", 1, &[]);
    meta.create_topic(first.clone()).await.unwrap();
    assert_eq!(meta.delete_topic("t").await.unwrap().id, first.id);
    assert!(meta.topic("t").is_none());
    let second = topic("t", 1, &[]);
    meta.create_topic(second.clone()).await.unwrap();
    drop(meta);
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    assert_eq!(meta.topic("t").unwrap().id, second.id);
    assert_ne!(first.id, second.id);
}

#[tokio::test]
async fn producer_ids_are_never_handed_out_twice_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let a = meta.allocate_producer_ids(10).await.unwrap();
    let b = meta.allocate_producer_ids(1).await.unwrap();
    assert!(b >= a + 10);
    drop(meta);
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let c = meta.allocate_producer_ids(1).await.unwrap();
    assert!(c > b);
}

#[test]
fn a_corrupt_metadata_file_is_an_error_not_an_empty_cluster() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("meta")).unwrap();
    std::fs::write(dir.path().join("meta/cluster.json"), b"{ not json").unwrap();
    assert!(LocalMetaStore::open(dir.path()).is_err());
}

#[tokio::test]
async fn the_cluster_id_is_stored_at_first_use_and_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    assert_eq!(meta.cluster_id("first").await.unwrap(), "first");
    assert_eq!(meta.cluster_id("second").await.unwrap(), "first");
    drop(meta);

    let meta = LocalMetaStore::open(dir.path()).unwrap();
    assert_eq!(meta.cluster_id("third").await.unwrap(), "first");
}

#[tokio::test]
async fn scram_credentials_and_acls_survive_a_restart_and_deletes_say_what_they_removed() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let credential = StoredScramCredential {
        salt: vec![0, 1, 0xfe, 0xff],
        stored_key: vec![7; 32],
        server_key: vec![9; 32],
        iterations: 4096,
    };
    assert!(!meta
        .set_scram_credential("alice", "SCRAM-SHA-512", Some(credential.clone()))
        .await
        .unwrap());
    assert!(meta
        .set_scram_credential("alice", "SCRAM-SHA-512", Some(credential.clone()))
        .await
        .unwrap());
    meta.set_scram_credential("bob", "SCRAM-SHA-256", Some(credential.clone()))
        .await
        .unwrap();
    let acl = StoredAcl {
        resource_type: 2,
        resource_name: "orders".into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: 3,
        permission: 3,
    };
    meta.set_acls(vec![acl.clone()]).await.unwrap();
    assert!(
        !format!("{credential:?}").contains("7, 7"),
        "Debug shows no key material"
    );
    drop(meta);

    let meta = LocalMetaStore::open(dir.path()).unwrap();
    assert_eq!(
        meta.scram_credential("alice", "SCRAM-SHA-512"),
        Some(credential)
    );
    assert_eq!(meta.scram_credential("alice", "SCRAM-SHA-256"), None);
    assert_eq!(meta.acls(), vec![acl]);
    assert!(meta
        .set_scram_credential("bob", "SCRAM-SHA-256", None)
        .await
        .unwrap());
    assert!(!meta
        .set_scram_credential("bob", "SCRAM-SHA-256", None)
        .await
        .unwrap());
    assert_eq!(
        meta.scram_users().keys().collect::<Vec<_>>(),
        ["alice"],
        "a user without mechanisms is gone"
    );
}

#[test]
fn a_data_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalMetaStore::open(dir.path()).unwrap();
    // flock belongs to the open file, so a second open in this very process is refused as another
    // process's would be.
    match LocalMetaStore::open(dir.path()) {
        Err(StorageError::Locked { path }) => assert_eq!(path, dir.path().join("meta/lock")),
        Err(other) => panic!("wrong refusal: {other}"),
        Ok(_) => panic!("two stores opened one data directory"),
    }
    // A refused open changes nothing: the first store still writes.
    drop(first);
    let reopened = LocalMetaStore::open(dir.path()).unwrap();
    drop(reopened);
}

#[tokio::test]
async fn a_lock_file_left_behind_locks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    meta.cluster_id("kept").await.unwrap();
    drop(meta);
    assert!(dir.path().join("meta/lock").exists());
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    assert_eq!(meta.cluster_id("other").await.unwrap(), "kept");
}
