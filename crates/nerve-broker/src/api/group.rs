//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
//! DescribeGroups, DeleteGroups. The rules live in the coordinator (`crate::group`); these decode the
//! request at its version, ask the coordinator, and encode what it answers at the same version.
//!
//! JoinGroup and SyncGroup wait for the rebalance; a broker shutting down answers them with
//! `NOT_COORDINATOR`, which sends clients looking for the coordinator again.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use nerve_storage::TopicPartition;
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, message, respond};
use crate::broker::Broker;
use crate::error::RequestError;
use crate::group::coordinator::{JoinRequest, JoinResult, SyncRequest, SyncResult};
use crate::group::GroupState;
use crate::session::Session;
use nerve_auth::acl::CLUSTER_NAME;
use nerve_auth::{Operation, ResourceType};

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

pub(crate) fn find_coordinator(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: FindCoordinatorRequest = decode(&request)?;
    let version = request.api_version();
    let (host, port) = (
        &session.listener.advertised_host,
        &session.listener.advertised_port,
    );
    let node = broker.config.node_id;
    // The answer for one key: this node, or why not.
    let answer = |key: &str| -> Result<(), (ResponseError, &'static str)> {
        match body.key_type {
            KEY_TYPE_GROUP if key.is_empty() => {
                Err((ResponseError::InvalidRequest, "the group id is empty"))
            }
            KEY_TYPE_GROUP
                if !broker.authorize(session, Operation::Describe, ResourceType::Group, key) =>
            {
                Err((
                    ResponseError::GroupAuthorizationFailed,
                    "not authorized to describe the group",
                ))
            }
            KEY_TYPE_GROUP => Ok(()),
            KEY_TYPE_TRANSACTION => Err((
                ResponseError::CoordinatorNotAvailable,
                "transactions are not supported yet",
            )),
            _ => Err((ResponseError::InvalidRequest, "unsupported key type")),
        }
    };
    let response = FindCoordinatorResponse::default().with_throttle_time_ms(0);
    let response = if version >= 4 {
        // KIP-699: a batch of keys, each answered.
        let coordinators = body
            .coordinator_keys
            .iter()
            .map(|key| {
                let entry = CoordinatorEntry::default().with_key(key.clone());
                match answer(key.as_str()) {
                    Ok(()) => entry
                        .with_node_id(BrokerId(node))
                        .with_host(text(host.clone()))
                        .with_port(i32::from(*port)),
                    Err((error, why)) => entry
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(error.code())
                        .with_error_message(message(why)),
                }
            })
            .collect();
        response.with_coordinators(coordinators)
    } else {
        let response = match answer(body.key.as_str()) {
            Ok(()) => response
                .with_node_id(BrokerId(node))
                .with_host(text(host.clone()))
                .with_port(i32::from(*port)),
            Err((error, why)) => response
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(error.code())
                .with_error_message((version >= 1).then(|| text(why))),
        };
        if version >= 1 && response.error_code == 0 {
            response.with_error_message(None)
        } else {
            response
        }
    };
    count_error(broker, &request, response.error_code);
    for coordinator in &response.coordinators {
        count_error(broker, &request, coordinator.error_code);
    }
    respond(&request, &response)
}

pub(crate) async fn join_group(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let peer = session.peer;
    let body: JoinGroupRequest = decode(&request)?;
    let version = request.api_version();
    let session_timeout =
        Duration::from_millis(u64::try_from(body.session_timeout_ms).unwrap_or(0));
    // v0 has no rebalance timeout: the session timeout serves for both, as in Kafka.
    let rebalance_timeout = if version == 0 {
        session_timeout
    } else {
        Duration::from_millis(u64::try_from(body.rebalance_timeout_ms).unwrap_or(0))
    };
    let join = JoinRequest {
        group_id: body.group_id.0.to_string(),
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.map(|i| i.to_string()),
        client_id: client_id(&request),
        // As Kafka shows it (`InetAddress.toString()` of the connection's peer).
        client_host: format!("/{}", peer.ip()),
        session_timeout,
        rebalance_timeout,
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let result = if !broker.authorize(
        session,
        Operation::Read,
        ResourceType::Group,
        &join.group_id,
    ) {
        JoinResult::error(ResponseError::GroupAuthorizationFailed, &member_id)
    } else {
        tokio::select! {
            result = broker.groups.join(join) => result,
            () = broker.shutting_down() => JoinResult::error(ResponseError::NotCoordinator, &member_id),
        }
    };
    let members = result
        .members
        .into_iter()
        .map(|m| {
            let member = JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                member.with_group_instance_id(m.instance_id.map(text))
            } else {
                member
            }
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(code(result.error))
        .with_generation_id(result.generation)
        .with_protocol_type(result.protocol_type.map(text))
        .with_protocol_name(if version >= 7 {
            result.protocol_name.map(text)
        } else {
            Some(text(result.protocol_name.unwrap_or_default()))
        })
        .with_leader(text(result.leader))
        .with_member_id(text(result.member_id))
        .with_members(members);
    count_error(broker, &request, response.error_code);
    respond(&request, &response)
}

pub(crate) async fn sync_group(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: SyncGroupRequest = decode(&request)?;
    let version = request.api_version();
    let sync = SyncRequest {
        group_id: body.group_id.0.to_string(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        instance_id: body.group_instance_id.map(|i| i.to_string()),
        protocol_type: body.protocol_type.map(|t| t.to_string()),
        protocol_name: body.protocol_name.map(|n| n.to_string()),
        assignments: body
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let result = if !broker.authorize(
        session,
        Operation::Read,
        ResourceType::Group,
        &sync.group_id,
    ) {
        SyncResult::error(ResponseError::GroupAuthorizationFailed)
    } else {
        tokio::select! {
            result = broker.groups.sync(sync) => result,
            () = broker.shutting_down() => SyncResult::error(ResponseError::NotCoordinator),
        }
    };
    let response = SyncGroupResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(code(result.error))
        .with_assignment(result.assignment);
    let response = if version >= 5 {
        response
            .with_protocol_type(result.protocol_type.map(text))
            .with_protocol_name(result.protocol_name.map(text))
    } else {
        response
    };
    count_error(broker, &request, response.error_code);
    respond(&request, &response)
}

pub(crate) fn heartbeat(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: HeartbeatRequest = decode(&request)?;
    let group = body.group_id.0.as_str();
    let error = if !broker.authorize(session, Operation::Read, ResourceType::Group, group) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        broker.groups.heartbeat(
            group,
            body.generation_id,
            body.member_id.as_str(),
            body.group_instance_id.as_ref().map(|i| i.as_str()),
        )
    };
    let response = HeartbeatResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(code(error));
    count_error(broker, &request, response.error_code);
    respond(&request, &response)
}

pub(crate) fn leave_group(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: LeaveGroupRequest = decode(&request)?;
    let version = request.api_version();
    if !broker.authorize(
        session,
        Operation::Read,
        ResourceType::Group,
        body.group_id.0.as_str(),
    ) {
        let response = LeaveGroupResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
        count_error(broker, &request, response.error_code);
        return respond(&request, &response);
    }
    // v3+ (KIP-345): a batch of members, each with an optional instance id; before, one member id.
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        body.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let answers = broker.groups.leave(body.group_id.0.as_str(), &leaving);
    let response = LeaveGroupResponse::default().with_throttle_time_ms(0);
    let response = if version >= 3 {
        response.with_members(
            leaving
                .into_iter()
                .zip(answers)
                .map(|((member_id, instance_id), error)| {
                    MemberResponse::default()
                        .with_member_id(text(member_id))
                        .with_group_instance_id(instance_id.map(text))
                        .with_error_code(code(error))
                })
                .collect(),
        )
    } else {
        response.with_error_code(code(answers.into_iter().next().flatten()))
    };
    count_error(broker, &request, response.error_code);
    for member in &response.members {
        count_error(broker, &request, member.error_code);
    }
    respond(&request, &response)
}

pub(crate) fn list_groups(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    // DESCRIBE on the cluster lists every group; otherwise a client sees the groups it may describe.
    let all = broker.is_allowed(
        session,
        Operation::Describe,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    let body: ListGroupsRequest = decode(&request)?;
    let version = request.api_version();
    let states: Vec<String> = body
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = body
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| {
            states.is_empty() || states.contains(&state.name().to_ascii_lowercase())
        })
        // Every group here is a classic group (KIP-848's "consumer" groups do not exist yet).
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .filter(|(id, _, _)| {
            all || broker.is_allowed(session, Operation::Describe, ResourceType::Group, id)
        })
        .map(|(id, protocol_type, state)| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(text(id)))
                .with_protocol_type(text(protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(text(state.name()))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(text("classic"))
            } else {
                listed
            }
        })
        .collect();
    let response = ListGroupsResponse::default()
        .with_throttle_time_ms(0)
        .with_groups(groups);
    count_error(broker, &request, response.error_code);
    respond(&request, &response)
}

pub(crate) fn describe_groups(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: DescribeGroupsRequest = decode(&request)?;
    let version = request.api_version();
    let groups = body
        .groups
        .into_iter()
        .map(|group_id| {
            let described = DescribedGroup::default().with_group_id(group_id.clone());
            if !broker.authorize(
                session,
                Operation::Describe,
                ResourceType::Group,
                &group_id.0,
            ) {
                return described.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let Some(group) = broker.groups.describe(group_id.0.as_str()) else {
                // Kafka before v6 describes an unknown group as Dead; v6 says it is not found.
                return if version >= 6 {
                    described
                        .with_group_state(text(GroupState::Dead.name()))
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(message(format!(
                            "group {} not found",
                            group_id.0.as_str()
                        )))
                } else {
                    described.with_group_state(text(GroupState::Dead.name()))
                };
            };
            let members = group
                .members
                .into_iter()
                .map(|m| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(text(m.member_id))
                        .with_client_id(text(m.client_id))
                        .with_client_host(text(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if version >= 4 {
                        member.with_group_instance_id(m.instance_id.map(text))
                    } else {
                        member
                    }
                })
                .collect();
            let described = described
                .with_group_state(text(group.state.name()))
                .with_protocol_type(text(group.protocol_type))
                .with_protocol_data(text(group.protocol))
                .with_members(members);
            if version >= 3 && body.include_authorized_operations {
                // The group operations (READ 3, DELETE 6, DESCRIBE 8) this client may perform.
                let operations = [Operation::Read, Operation::Delete, Operation::Describe]
                    .into_iter()
                    .filter(|op| broker.is_allowed(session, *op, ResourceType::Group, &group_id.0))
                    .fold(0, |bits, op| bits | (1 << op.code()));
                described.with_authorized_operations(operations)
            } else {
                described
            }
        })
        .collect();
    let response = DescribeGroupsResponse::default()
        .with_throttle_time_ms(0)
        .with_groups(groups);
    for group in &response.groups {
        count_error(broker, &request, group.error_code);
    }
    respond(&request, &response)
}

pub(crate) async fn delete_groups(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: DeleteGroupsRequest = decode(&request)?;
    let mut results = Vec::with_capacity(body.groups_names.len());
    for group_id in body.groups_names {
        let error =
            if broker.authorize(session, Operation::Delete, ResourceType::Group, &group_id.0) {
                delete_group(broker, group_id.0.as_str()).await.err()
            } else {
                Some(ResponseError::GroupAuthorizationFailed)
            };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code(error)),
        );
    }
    let response = DeleteGroupsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results);
    for result in &response.results {
        count_error(broker, &request, result.error_code);
    }
    respond(&request, &response)
}

/// Deletes a group without members: tombstones for its offsets, then it is forgotten.
async fn delete_group(broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let partitions: Vec<TopicPartition> = {
        let groups = broker.groups.groups();
        let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        if group.state != GroupState::Empty || !group.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        group.offsets.keys().cloned().collect()
    };
    broker.groups.delete_offsets(group_id, &partitions).await?;
    let mut groups = broker.groups.groups();
    if groups
        .get(group_id)
        .is_some_and(|g| g.state == GroupState::Empty && g.members.is_empty())
    {
        groups.remove(group_id);
    }
    tracing::info!(group = group_id, "group deleted");
    Ok(())
}

/// The client id of the request header.
fn client_id(request: &RequestFrame) -> String {
    request
        .header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default()
}
