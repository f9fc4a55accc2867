//! Consumer groups over a real socket, with kafka-protocol as the client codec: the classic rebalance
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), committed offsets (OffsetCommit, OffsetFetch,
//! OffsetDelete) and the group admin APIs. Each test runs its own broker with its own data directory.
//! Waits are bounded; nothing asserts on timing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

mod common;
use common::{create_topic, name, s, Client, TestBroker, PATIENCE};

/// A broker without the initial rebalance delay, accepting session timeouts from 200 ms.
async fn start() -> TestBroker {
    start_in(tempfile::tempdir().unwrap()).await
}

async fn start_in(dir: tempfile::TempDir) -> TestBroker {
    common::start_in(dir, |config, _| {
        config.group_initial_rebalance_delay_ms = 0;
        config.group_min_session_timeout_ms = 200;
    })
    .await
}

fn group(id: &str) -> GroupId {
    GroupId(s(id))
}

const JOIN_V: i16 = 9;
const SYNC_V: i16 = 5;
const HEARTBEAT_V: i16 = 4;

fn join_request(group_id: &str, member_id: &str, protocols: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|p| {
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s(p))
                        .with_metadata(Bytes::from(format!("{p}-metadata")))
                })
                .collect(),
        )
}

/// The member id a new member is handed with `MEMBER_ID_REQUIRED`.
async fn member_id(client: &mut Client, group_id: &str, protocols: &[&str]) -> String {
    let response = client
        .call(JOIN_V, &join_request(group_id, "", protocols))
        .await;
    assert_eq!(
        response.error_code,
        ResponseError::MemberIdRequired.code(),
        "{response:?}"
    );
    assert!(!response.member_id.is_empty());
    response.member_id.to_string()
}

/// Sends a JoinGroup (which waits for the rebalance) and returns its correlation id.
async fn send_join(client: &mut Client, group_id: &str, member: &str, protocols: &[&str]) -> i32 {
    client
        .send(JOIN_V, &join_request(group_id, member, protocols))
        .await
}

async fn recv_join(client: &mut Client, id: i32) -> JoinGroupResponse {
    client.recv::<JoinGroupRequest>(JOIN_V, id).await
}

fn sync_request(
    group_id: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        )
}

async fn heartbeat(client: &mut Client, group_id: &str, generation: i32, member: &str) -> i16 {
    client
        .call(
            HEARTBEAT_V,
            &HeartbeatRequest::default()
                .with_group_id(group(group_id))
                .with_generation_id(generation)
                .with_member_id(s(member)),
        )
        .await
        .error_code
}

async fn describe(client: &mut Client, group_id: &str) -> describe_groups_response::DescribedGroup {
    client
        .call(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![group(group_id)]),
        )
        .await
        .groups
        .remove(0)
}

#[tokio::test]
async fn a_new_member_gets_member_id_required_then_joins_with_that_id() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let id = member_id(&mut client, "g", &["range"]).await;
    let joined = client
        .call(JOIN_V, &join_request("g", &id, &["range"]))
        .await;
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.member_id.as_str(), id);
    assert_eq!(joined.leader.as_str(), id);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, Bytes::from("range-metadata"));

    // Before v4 a member joins at once with the id it is given.
    let old = client.call(3, &join_request("old", "", &["range"])).await;
    assert_eq!(old.error_code, 0);
    assert!(!old.member_id.is_empty());

    // An id the group never handed out is refused.
    let unknown = client
        .call(JOIN_V, &join_request("g", "made-up", &["range"]))
        .await;
    assert_eq!(unknown.error_code, ResponseError::UnknownMemberId.code());
}

#[tokio::test]
async fn members_rebalance_once_per_change_and_follow_the_leaders_assignment() {
    let broker = start().await;
    let mut a = Client::connect(&broker).await;
    let mut b = Client::connect(&broker).await;

    // A alone: generation 1, stable after its SyncGroup.
    let a_id = member_id(&mut a, "g", &["range", "roundrobin"]).await;
    let join = send_join(&mut a, "g", &a_id, &["range", "roundrobin"]).await;
    let joined = recv_join(&mut a, join).await;
    assert_eq!(joined.generation_id, 1);
    let synced = a
        .call(SYNC_V, &sync_request("g", 1, &a_id, &[(&a_id, "all")]))
        .await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from("all"));
    assert_eq!(synced.protocol_name.as_deref(), Some("range"));
    assert_eq!(heartbeat(&mut a, "g", 1, &a_id).await, 0);
    assert_eq!(describe(&mut a, "g").await.group_state.as_str(), "Stable");

    // B supports only roundrobin: joining starts a rebalance that A learns of from its heartbeat.
    let b_id = member_id(&mut b, "g", &["roundrobin"]).await;
    let b_join = send_join(&mut b, "g", &b_id, &["roundrobin"]).await;
    let started = Instant::now();
    loop {
        let code = heartbeat(&mut a, "g", 1, &a_id).await;
        if code == ResponseError::RebalanceInProgress.code() {
            break;
        }
        assert_eq!(code, 0);
        assert!(started.elapsed() < PATIENCE, "no rebalance started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        describe(&mut a, "g").await.group_state.as_str(),
        "PreparingRebalance"
    );
    // SyncGroup of the old generation while preparing: rejoin first.
    let early = a.call(SYNC_V, &sync_request("g", 1, &a_id, &[])).await;
    assert_eq!(early.error_code, ResponseError::RebalanceInProgress.code());

    let a_join = send_join(&mut a, "g", &a_id, &["range", "roundrobin"]).await;
    let a_joined = recv_join(&mut a, a_join).await;
    let b_joined = recv_join(&mut b, b_join).await;
    // One rebalance: generation 2, the protocol both support, A still leads and sees both members.
    for joined in [&a_joined, &b_joined] {
        assert_eq!(joined.error_code, 0, "{joined:?}");
        assert_eq!(joined.generation_id, 2);
        assert_eq!(joined.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(joined.leader.as_str(), a_id);
    }
    let mut listed: Vec<(String, Bytes)> = a_joined
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.metadata.clone()))
        .collect();
    listed.sort();
    let mut expected = vec![
        (a_id.clone(), Bytes::from("roundrobin-metadata")),
        (b_id.clone(), Bytes::from("roundrobin-metadata")),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(b_joined.members.is_empty(), "only the leader gets members");

    // B's SyncGroup waits for the leader's.
    let b_sync = b.send(SYNC_V, &sync_request("g", 2, &b_id, &[])).await;
    let a_synced = a
        .call(
            SYNC_V,
            &sync_request("g", 2, &a_id, &[(&a_id, "p0-p2"), (&b_id, "p3-p5")]),
        )
        .await;
    assert_eq!(a_synced.assignment, Bytes::from("p0-p2"));
    let b_synced = b.recv::<SyncGroupRequest>(SYNC_V, b_sync).await;
    assert_eq!(b_synced.error_code, 0);
    assert_eq!(b_synced.assignment, Bytes::from("p3-p5"));
    assert_eq!(heartbeat(&mut b, "g", 2, &b_id).await, 0);

    // Stale generations, unknown members, inconsistent protocols.
    assert_eq!(
        heartbeat(&mut b, "g", 1, &b_id).await,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&mut b, "g", 2, "nobody").await,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut b, "nogroup", 2, &b_id).await,
        ResponseError::UnknownMemberId.code()
    );
    let stale_sync = b.call(SYNC_V, &sync_request("g", 1, &b_id, &[])).await;
    assert_eq!(
        stale_sync.error_code,
        ResponseError::IllegalGeneration.code()
    );
    let wrong_protocol = b
        .call(
            SYNC_V,
            &sync_request("g", 2, &b_id, &[]).with_protocol_name(Some(s("range"))),
        )
        .await;
    assert_eq!(
        wrong_protocol.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let mut c = Client::connect(&broker).await;
    let incompatible = c.call(JOIN_V, &join_request("g", "", &["sticky"])).await;
    assert_eq!(
        incompatible.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );

    let described = describe(&mut a, "g").await;
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.protocol_data.as_str(), "roundrobin");
    assert_eq!(described.members.len(), 2);
    let b_described = described
        .members
        .iter()
        .find(|m| m.member_id.as_str() == b_id)
        .unwrap();
    assert_eq!(b_described.member_assignment, Bytes::from("p3-p5"));
    assert_eq!(b_described.client_id.as_str(), common::CLIENT_ID);
    assert_eq!(b_described.client_host.as_str(), "/127.0.0.1");

    // B leaves (v3+ batch form): A is told to rejoin, and alone makes generation 3.
    let left = b
        .call(
            5,
            &LeaveGroupRequest::default()
                .with_group_id(group("g"))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s(&b_id)),
                    leave_group_request::MemberIdentity::default().with_member_id(s("nobody")),
                ]),
        )
        .await;
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(
        left.members[1].error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut a, "g", 2, &a_id).await,
        ResponseError::RebalanceInProgress.code()
    );
    let a_join = send_join(&mut a, "g", &a_id, &["range", "roundrobin"]).await;
    let alone = recv_join(&mut a, a_join).await;
    assert_eq!(alone.generation_id, 3);
    assert_eq!(alone.protocol_name.as_deref(), Some("range"));
    assert_eq!(alone.members.len(), 1);

    let listed = a
        .call(5, &ListGroupsRequest::default())
        .await
        .groups
        .into_iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect::<Vec<_>>();
    assert_eq!(
        listed,
        vec![("g".to_string(), "CompletingRebalance".to_string())]
    );
}

#[tokio::test]
async fn a_silent_member_is_evicted_after_its_session_timeout_and_its_partitions_move() {
    let broker = start().await;
    let mut a = Client::connect(&broker).await;
    let mut b = Client::connect(&broker).await;
    let short = |member: &str| join_request("g", member, &["range"]).with_session_timeout_ms(500);

    let a_id = member_id(&mut a, "g", &["range"]).await;
    let b_id = member_id(&mut b, "g", &["range"]).await;
    let a_join = a.send(JOIN_V, &short(&a_id)).await;
    let b_join = b.send(JOIN_V, &short(&b_id)).await;
    let a_joined = recv_join(&mut a, a_join).await;
    let b_joined = recv_join(&mut b, b_join).await;
    // Both joined one generation (whichever way the two joins interleaved).
    assert_eq!(a_joined.generation_id, b_joined.generation_id);
    let generation = a_joined.generation_id;
    let leader = a_joined.leader.to_string();
    let (leader_client, follower_client) = if leader == a_id {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let follower_id = if leader == a_id { &b_id } else { &a_id };
    let follower_sync = follower_client
        .send(SYNC_V, &sync_request("g", generation, follower_id, &[]))
        .await;
    leader_client
        .call(
            SYNC_V,
            &sync_request("g", generation, &leader, &[(&a_id, "a"), (&b_id, "b")]),
        )
        .await;
    follower_client
        .recv::<SyncGroupRequest>(SYNC_V, follower_sync)
        .await;

    // B goes silent; A keeps heartbeating until it is told to rejoin.
    let started = Instant::now();
    loop {
        let code = heartbeat(&mut a, "g", generation, &a_id).await;
        if code == ResponseError::RebalanceInProgress.code() {
            break;
        }
        assert_eq!(code, 0);
        assert!(started.elapsed() < PATIENCE, "B was never evicted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a_join = a.send(JOIN_V, &short(&a_id)).await;
    let alone = recv_join(&mut a, a_join).await;
    assert_eq!(alone.error_code, 0);
    assert_eq!(alone.generation_id, generation + 1);
    assert_eq!(alone.leader.as_str(), a_id);
    assert_eq!(alone.members.len(), 1, "B is gone: {alone:?}");
    assert_eq!(
        heartbeat(&mut b, "g", generation, &b_id).await,
        ResponseError::UnknownMemberId.code()
    );
}

#[tokio::test]
async fn a_static_member_that_restarts_keeps_its_assignment_without_a_rebalance() {
    let broker = start().await;
    let mut a = Client::connect(&broker).await;
    let mut b = Client::connect(&broker).await;
    let as_static = |member: &str, instance: &str| {
        join_request("g", member, &["range"]).with_group_instance_id(Some(s(instance)))
    };
    // Static members join at once, without MEMBER_ID_REQUIRED.
    let a_join = a.send(JOIN_V, &as_static("", "a")).await;
    let a_joined = recv_join(&mut a, a_join).await;
    assert_eq!(a_joined.error_code, 0);
    let a_id = a_joined.member_id.to_string();
    a.call(SYNC_V, &sync_request("g", 1, &a_id, &[(&a_id, "a-only")]))
        .await;
    let b_join = b.send(JOIN_V, &as_static("", "b")).await;
    // A rejoins for the rebalance B started.
    let a_join = a.send(JOIN_V, &as_static(&a_id, "a")).await;
    let a_joined = recv_join(&mut a, a_join).await;
    let b_joined = recv_join(&mut b, b_join).await;
    assert_eq!(a_joined.generation_id, 2);
    let b_id = b_joined.member_id.to_string();
    let b_sync = b.send(SYNC_V, &sync_request("g", 2, &b_id, &[])).await;
    a.call(
        SYNC_V,
        &sync_request("g", 2, &a_id, &[(&a_id, "for-a"), (&b_id, "for-b")]),
    )
    .await;
    b.recv::<SyncGroupRequest>(SYNC_V, b_sync).await;

    // B restarts: a new connection, an empty member id, the same instance id.
    drop(b);
    let mut b = Client::connect(&broker).await;
    let rejoined = b.call(JOIN_V, &as_static("", "b")).await;
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, 2, "no rebalance");
    let new_b_id = rejoined.member_id.to_string();
    assert_ne!(new_b_id, b_id);
    let synced = b.call(SYNC_V, &sync_request("g", 2, &new_b_id, &[])).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from("for-b"));
    assert_eq!(heartbeat(&mut a, "g", 2, &a_id).await, 0);
    // The old incarnation is fenced.
    let fenced = b
        .call(
            HEARTBEAT_V,
            &HeartbeatRequest::default()
                .with_group_id(group("g"))
                .with_generation_id(2)
                .with_member_id(s(&b_id))
                .with_group_instance_id(Some(s("b"))),
        )
        .await;
    assert_eq!(fenced.error_code, ResponseError::FencedInstanceId.code());
}

fn commit_request(
    group_id: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64, Option<&str>)],
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
        BTreeMap::new();
    for (topic, partition, offset, metadata) in offsets {
        topics.entry(topic).or_default().push(
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_metadata(metadata.map(s)),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, partitions)| {
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name(t))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

fn commit_errors(response: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

/// OffsetFetch v7 of `group_id` for `topic`'s partitions: (partition, offset, metadata).
async fn fetch_offsets(
    client: &mut Client,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, i64, Option<String>)> {
    let response = client
        .call(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(group(group_id))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name(topic))
                        .with_partition_indexes(partitions.to_vec()),
                ])),
        )
        .await;
    assert_eq!(response.error_code, 0);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0);
            (
                p.partition_index,
                p.committed_offset,
                p.metadata.as_ref().map(|m| m.to_string()),
            )
        })
        .collect()
}

#[tokio::test]
async fn committed_offsets_come_back_with_their_metadata_and_survive_a_restart() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "orders", 3, &[]).await;
    // A simple commit (generation -1) to a group without members.
    let committed = client
        .call(
            8,
            &commit_request(
                "g",
                -1,
                "",
                &[
                    ("orders", 0, 42, Some("checkpoint {\"a\": 1}")),
                    ("orders", 1, 7, None),
                ],
            ),
        )
        .await;
    assert_eq!(
        commit_errors(&committed),
        vec![("orders".into(), 0, 0), ("orders".into(), 1, 0)]
    );
    let expected = vec![
        (0, 42, Some("checkpoint {\"a\": 1}".to_string())),
        (1, 7, Some(String::new())),
        (2, -1, Some(String::new())),
    ];
    assert_eq!(
        fetch_offsets(&mut client, "g", "orders", &[0, 1, 2]).await,
        expected
    );
    // Unknown groups have nothing committed.
    assert_eq!(
        fetch_offsets(&mut client, "other", "orders", &[0]).await,
        vec![(0, -1, Some(String::new()))]
    );
    // A later commit replaces an earlier one.
    client
        .call(
            2,
            &commit_request("g", -1, "", &[("orders", 1, 8, Some("v2"))]),
        )
        .await;

    let dir = broker.shut_down().await;
    let broker = start_in(dir).await;
    let mut client = Client::connect(&broker).await;
    let expected = vec![
        (0, 42, Some("checkpoint {\"a\": 1}".to_string())),
        (1, 8, Some("v2".to_string())),
    ];
    assert_eq!(
        fetch_offsets(&mut client, "g", "orders", &[0, 1]).await,
        expected
    );

    // v1 and v8 (several groups at once, or all of a group's topics with a null list).
    let v1 = client
        .call(
            1,
            &OffsetFetchRequest::default()
                .with_group_id(group("g"))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name("orders"))
                        .with_partition_indexes(vec![0]),
                ])),
        )
        .await;
    assert_eq!(v1.topics[0].partitions[0].committed_offset, 42);
    let v8 = client
        .call(
            8,
            &OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group("g"))
                    .with_topics(None),
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group("none"))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(name("orders"))
                            .with_partition_indexes(vec![2]),
                    ])),
            ]),
        )
        .await;
    let all: Vec<(i32, i64)> = v8.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(all, vec![(0, 42), (1, 8)]);
    assert_eq!(v8.groups[1].topics[0].partitions[0].committed_offset, -1);

    // The group is listed (Empty) and can be deleted; its offsets go with it, also after a restart.
    let described = describe(&mut client, "g").await;
    assert_eq!(described.group_state.as_str(), "Empty");
    let deleted = client
        .call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![group("g"), group("nope")]),
        )
        .await;
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(
        deleted.results[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    let dir = broker.shut_down().await;
    let broker = start_in(dir).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        fetch_offsets(&mut client, "g", "orders", &[0]).await,
        vec![(0, -1, Some(String::new()))]
    );
}

#[tokio::test]
async fn commits_from_stale_members_and_to_unknown_partitions_are_refused() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "orders", 2, &[]).await;
    let id = member_id(&mut client, "g", &["range"]).await;
    let joined = client
        .call(JOIN_V, &join_request("g", &id, &["range"]))
        .await;
    let generation = joined.generation_id;
    let synced = client
        .call(SYNC_V, &sync_request("g", generation, &id, &[(&id, "x")]))
        .await;
    assert_eq!(synced.error_code, 0);

    let ok = client
        .call(
            9,
            &commit_request("g", generation, &id, &[("orders", 0, 5, Some("m"))]),
        )
        .await;
    assert_eq!(commit_errors(&ok), vec![("orders".into(), 0, 0)]);
    let stale = client
        .call(
            9,
            &commit_request("g", generation - 1, &id, &[("orders", 0, 6, None)]),
        )
        .await;
    assert_eq!(
        commit_errors(&stale),
        vec![("orders".into(), 0, ResponseError::IllegalGeneration.code())]
    );
    let stranger = client
        .call(
            9,
            &commit_request("g", generation, "stranger", &[("orders", 0, 6, None)]),
        )
        .await;
    assert_eq!(
        commit_errors(&stranger),
        vec![("orders".into(), 0, ResponseError::UnknownMemberId.code())]
    );
    // A simple commit to a group with members is from an unknown member.
    let simple = client
        .call(9, &commit_request("g", -1, "", &[("orders", 0, 6, None)]))
        .await;
    assert_eq!(
        commit_errors(&simple),
        vec![("orders".into(), 0, ResponseError::UnknownMemberId.code())]
    );
    let unknown_group = client
        .call(
            9,
            &commit_request("nogroup", 3, "x", &[("orders", 0, 6, None)]),
        )
        .await;
    assert_eq!(
        commit_errors(&unknown_group),
        vec![("orders".into(), 0, ResponseError::IllegalGeneration.code())]
    );
    // Per partition: unknown ones and oversized metadata fail; the rest of the request commits.
    let long = "m".repeat(4097);
    let mixed = client
        .call(
            9,
            &commit_request(
                "g",
                generation,
                &id,
                &[
                    ("orders", 1, 9, Some(&long)),
                    ("orders", 2, 9, None),
                    ("missing", 0, 9, None),
                    ("orders", 0, 10, Some("fine")),
                ],
            ),
        )
        .await;
    let mut errors = commit_errors(&mixed);
    errors.sort();
    assert_eq!(
        errors,
        vec![
            (
                "missing".into(),
                0,
                ResponseError::UnknownTopicOrPartition.code()
            ),
            ("orders".into(), 0, 0),
            (
                "orders".into(),
                1,
                ResponseError::OffsetMetadataTooLarge.code()
            ),
            (
                "orders".into(),
                2,
                ResponseError::UnknownTopicOrPartition.code()
            ),
        ]
    );
    assert_eq!(
        fetch_offsets(&mut client, "g", "orders", &[0, 1]).await,
        vec![
            (0, 10, Some("fine".to_string())),
            (1, -1, Some(String::new()))
        ]
    );

    // Offsets of a topic the group does not subscribe to can be deleted while it has members; a group
    // with members cannot be deleted.
    let deleted = client
        .call(
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(group("g"))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("orders"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        )
        .await;
    // The test's member metadata is not a consumer subscription, so no topic is safe to delete.
    assert_eq!(deleted.error_code, ResponseError::NonEmptyGroup.code());
    let not_empty = client
        .call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![group("g")]),
        )
        .await;
    assert_eq!(
        not_empty.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );
    let left = client
        .call(
            2,
            &LeaveGroupRequest::default()
                .with_group_id(group("g"))
                .with_member_id(s(&id)),
        )
        .await;
    assert_eq!(left.error_code, 0);
    let deleted = client
        .call(
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(group("g"))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("orders"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        )
        .await;
    assert_eq!(deleted.error_code, 0);
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch_offsets(&mut client, "g", "orders", &[0]).await,
        vec![(0, -1, Some(String::new()))]
    );
}

#[tokio::test]
async fn find_coordinator_names_this_node_for_each_group_key() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    for version in 0..=3 {
        let response = client
            .call(
                version,
                &FindCoordinatorRequest::default().with_key(s("some-group")),
            )
            .await;
        assert_eq!(response.error_code, 0);
        assert_eq!(response.node_id, BrokerId(0));
        assert_eq!(response.host.as_str(), "nerve.test");
        assert_eq!(response.port, 19092);
    }
    for version in 4..=6 {
        let response = client
            .call(
                version,
                &FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![s("a"), s("b"), s("")]),
            )
            .await;
        let answers: Vec<(&str, i32, i16)> = response
            .coordinators
            .iter()
            .map(|c| (c.key.as_str(), c.node_id.0, c.error_code))
            .collect();
        assert_eq!(
            answers,
            vec![
                ("a", 0, 0),
                ("b", 0, 0),
                ("", -1, ResponseError::InvalidRequest.code())
            ]
        );
    }
    let transactional = client
        .call(
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s("tx")]),
        )
        .await;
    assert_eq!(
        transactional.coordinators[0].error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
}

#[tokio::test]
async fn clients_cannot_create_delete_or_produce_to_the_offsets_topic() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let created = client
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name("__consumer_offsets"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
        )
        .await;
    assert_eq!(
        created.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );
    let deleted = client
        .call(
            4,
            &DeleteTopicsRequest::default().with_topic_names(vec![name("__consumer_offsets")]),
        )
        .await;
    assert_eq!(
        deleted.responses[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    let mut builder = nerve_wire::BatchBuilder::new(0);
    builder.push(0, Some(b"k"), Some(b"v"), Vec::new());
    let produced = client
        .call(
            9,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(name("__consumer_offsets"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(builder.build().unwrap()))),
                    ])]),
        )
        .await;
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
    let metadata = client
        .call(
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(name("__consumer_offsets")))])),
        )
        .await;
    assert!(metadata.topics[0].is_internal);
}

#[tokio::test]
async fn deleting_a_topic_deletes_its_committed_offsets() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "doomed", 1, &[]).await;
    create_topic(&mut client, "kept", 1, &[]).await;
    client
        .call(
            9,
            &commit_request("g", -1, "", &[("doomed", 0, 5, None), ("kept", 0, 3, None)]),
        )
        .await;
    let deleted = client
        .call(
            4,
            &DeleteTopicsRequest::default().with_topic_names(vec![name("doomed")]),
        )
        .await;
    assert_eq!(deleted.responses[0].error_code, 0);
    create_topic(&mut client, "doomed", 1, &[]).await;
    assert_eq!(
        fetch_offsets(&mut client, "g", "doomed", &[0]).await,
        vec![(0, -1, Some(String::new()))]
    );
    assert_eq!(
        fetch_offsets(&mut client, "g", "kept", &[0]).await,
        vec![(0, 3, Some(String::new()))]
    );
    // Also after a restart, from the tombstones.
    let dir = broker.shut_down().await;
    let broker = start_in(dir).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        fetch_offsets(&mut client, "g", "doomed", &[0]).await,
        vec![(0, -1, Some(String::new()))]
    );
}
