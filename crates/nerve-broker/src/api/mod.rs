//! The dispatch table: API key -> handler, and the versions of each API that Nerve implements.
//!
//! Each API family is one module with a `handle` that decodes the request body, applies it to the
//! [`Broker`], and encodes the response. A handler returns `None` when Kafka sends no response at all
//! (Produce with `acks=0`).

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Decodable;
use nerve_wire::frame::{encode_response, RequestFrame};

use crate::broker::Broker;
use crate::error::RequestError;
use crate::session::Session;

pub(crate) mod acls;
pub(crate) mod admin;
pub(crate) mod api_versions;
pub(crate) mod configs;
pub(crate) mod delete_records;
pub(crate) mod describe_cluster;
pub(crate) mod fetch;
pub(crate) mod group;
pub(crate) mod leader_epoch;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod offsets;
pub(crate) mod produce;
pub(crate) mod producer_id;
pub(crate) mod scram_credentials;

/// The leader epoch of every partition: a single node leads every partition from its creation on and never
/// hands leadership over, so the epoch never moves from 0 (the epoch stored in every batch).
pub(crate) const LEADER_EPOCH: i32 = 0;

/// The APIs Nerve answers and their version ranges, as ApiVersions advertises them. Each range lies within
/// what kafka-protocol can decode and encode (Kafka 4.1's), and the admin APIs take all of it: Kafka 4 dropped
/// the versions below these (DescribeConfigs v0, OffsetForLeaderEpoch v0-v1), and today's clients
/// (librdkafka 2.x, Java 3.x, kafka-python, kafkajs) negotiate a version inside each range.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // v0 is followed by raw SASL tokens outside Kafka's framing (see sasl.rs); v1 by SaslAuthenticate.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// The versions of `api` Nerve implements, if any.
pub(crate) fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|&(_, min, max)| (min, max))
}

/// Answers one request of the client `session` describes. The response bytes are a whole frame. SASL
/// requests never come here: the connection runs them itself (see `sasl.rs`).
pub(crate) async fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Option<Bytes>, RequestError> {
    let api = request.api_key;
    let version = request.api_version();
    let Some((min, max)) = supported_versions(api) else {
        return Err(RequestError::UnsupportedApi(api));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            // KIP-511: the client learns our ranges from a v0 answer and retries at a version we have.
            broker.metrics.count_error(
                api,
                kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
            );
            return api_versions::unsupported_version(&request).map(Some);
        }
        return Err(RequestError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    match api {
        ApiKey::ApiVersions => api_versions::handle(broker, request).map(Some),
        ApiKey::Metadata => metadata::handle(broker, request, session).await.map(Some),
        ApiKey::Produce => produce::handle(broker, request, session).await,
        ApiKey::Fetch => fetch::handle(broker, request, session).await.map(Some),
        ApiKey::ListOffsets => list_offsets::handle(broker, request, session)
            .await
            .map(Some),
        ApiKey::CreateTopics => admin::create_topics(broker, request, session)
            .await
            .map(Some),
        ApiKey::DeleteTopics => admin::delete_topics(broker, request, session)
            .await
            .map(Some),
        ApiKey::InitProducerId => producer_id::handle(broker, request, session)
            .await
            .map(Some),
        ApiKey::CreatePartitions => admin::create_partitions(broker, request, session)
            .await
            .map(Some),
        ApiKey::DescribeConfigs => configs::describe(broker, request, session).map(Some),
        ApiKey::AlterConfigs => configs::alter(broker, request, session).await.map(Some),
        ApiKey::IncrementalAlterConfigs => configs::alter_incremental(broker, request, session)
            .await
            .map(Some),
        ApiKey::DeleteRecords => delete_records::handle(broker, request, session)
            .await
            .map(Some),
        ApiKey::DescribeCluster => describe_cluster::handle(broker, request, session).map(Some),
        ApiKey::OffsetForLeaderEpoch => leader_epoch::handle(broker, request, session).map(Some),
        ApiKey::FindCoordinator => group::find_coordinator(broker, request, session).map(Some),
        ApiKey::JoinGroup => group::join_group(broker, request, session).await.map(Some),
        ApiKey::SyncGroup => group::sync_group(broker, request, session).await.map(Some),
        ApiKey::Heartbeat => group::heartbeat(broker, request, session).map(Some),
        ApiKey::LeaveGroup => group::leave_group(broker, request, session).map(Some),
        ApiKey::ListGroups => group::list_groups(broker, request, session).map(Some),
        ApiKey::DescribeGroups => group::describe_groups(broker, request, session).map(Some),
        ApiKey::DeleteGroups => group::delete_groups(broker, request, session)
            .await
            .map(Some),
        ApiKey::OffsetCommit => offsets::offset_commit(broker, request, session)
            .await
            .map(Some),
        ApiKey::OffsetFetch => offsets::offset_fetch(broker, request, session).map(Some),
        ApiKey::OffsetDelete => offsets::offset_delete(broker, request, session)
            .await
            .map(Some),
        ApiKey::CreateAcls => acls::create(broker, request, session).await.map(Some),
        ApiKey::DescribeAcls => acls::describe(broker, request, session).map(Some),
        ApiKey::DeleteAcls => acls::delete(broker, request, session).await.map(Some),
        ApiKey::DescribeUserScramCredentials => {
            scram_credentials::describe(broker, request, session).map(Some)
        }
        ApiKey::AlterUserScramCredentials => scram_credentials::alter(broker, request, session)
            .await
            .map(Some),
        other => Err(RequestError::UnsupportedApi(other)),
    }
}

/// Decodes a request body at the request's version.
pub(crate) fn decode<T: Decodable>(request: &RequestFrame) -> Result<T, RequestError> {
    let mut body = request.body.clone();
    T::decode(&mut body, request.api_version()).map_err(|e| RequestError::Decode {
        api: request.api_key,
        version: request.api_version(),
        reason: e.to_string(),
    })
}

/// Counts an error code answered to `request` (0, no error, counts nothing).
pub(crate) fn count_error(broker: &Broker, request: &RequestFrame, code: i16) {
    broker.metrics.count_error(request.api_key, code);
}

/// Encodes a response to `request` as a whole frame.
pub(crate) fn respond<M: kafka_protocol::protocol::Encodable>(
    request: &RequestFrame,
    body: &M,
) -> Result<Bytes, RequestError> {
    Ok(encode_response(
        request.api_key,
        request.api_version(),
        request.correlation_id(),
        body,
    )?)
}

/// Kafka's topic name type from a `&str`.
pub(crate) fn topic_name(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        name.to_string(),
    ))
}

/// An optional error message for a response.
pub(crate) fn message(text: impl std::fmt::Display) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(kafka_protocol::protocol::StrBytes::from_string(
        text.to_string(),
    ))
}
