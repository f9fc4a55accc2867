//! DescribeCluster: the cluster id, this node (the only broker) and the controller (this node too).
//!
//! The cluster id is the one stored with the metadata, the same Metadata reports. A combined single node is
//! both a broker and the controller, so both endpoint types (v1+: 1 brokers, 2 controllers) are answered
//! with it.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use nerve_auth::acl::CLUSTER_NAME;
use nerve_auth::{Operation, ResourceType};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, message, respond};
use crate::broker::Broker;
use crate::error::RequestError;

const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

/// What `cluster_authorized_operations` says when the client did not ask (Kafka's "not requested").
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// The operations that apply to the cluster resource, as Kafka reports them: CREATE, ALTER, DESCRIBE,
/// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, CREATE_TOKENS, DESCRIBE_TOKENS.
const CLUSTER_OPERATIONS: [Operation; 9] = [
    Operation::Create,
    Operation::Alter,
    Operation::Describe,
    Operation::ClusterAction,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
    Operation::IdempotentWrite,
    Operation::CreateTokens,
    Operation::DescribeTokens,
];

/// The bit field of the cluster operations the client may perform (all of them without an authorizer).
pub(crate) fn cluster_operations(broker: &Broker, session: &crate::session::Session) -> i32 {
    CLUSTER_OPERATIONS
        .into_iter()
        .filter(|op| broker.is_allowed(session, *op, ResourceType::Cluster, CLUSTER_NAME))
        .fold(0, |bits, op| bits | (1 << op.code()))
}

pub(crate) fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Bytes, RequestError> {
    let body: DescribeClusterRequest = decode(&request)?;
    if !broker.authorize_cluster(session, nerve_auth::Operation::Describe) {
        let error = ResponseError::ClusterAuthorizationFailed;
        count_error(broker, &request, error.code());
        let response = DescribeClusterResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(error.to_string())))
            .with_endpoint_type(body.endpoint_type);
        return respond(&request, &response);
    }
    let response = DescribeClusterResponse::default()
        .with_throttle_time_ms(0)
        .with_endpoint_type(body.endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()));
    let response = if matches!(body.endpoint_type, ENDPOINT_BROKERS | ENDPOINT_CONTROLLERS) {
        let (host, port) = (
            &session.listener.advertised_host,
            &session.listener.advertised_port,
        );
        let node = BrokerId(broker.config.node_id);
        response
            .with_error_message(None)
            .with_controller_id(node)
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(node)
                .with_host(StrBytes::from_string(host.clone()))
                .with_port(i32::from(*port))
                .with_rack(None)])
            .with_cluster_authorized_operations(if body.include_cluster_authorized_operations {
                cluster_operations(broker, session)
            } else {
                OPERATIONS_NOT_REQUESTED
            })
    } else {
        response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(message(format!(
                "endpoint type {} is neither brokers (1) nor controllers (2)",
                body.endpoint_type
            )))
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
    };
    count_error(broker, &request, response.error_code);
    respond(&request, &response)
}
