//! CreateAcls, DescribeAcls, DeleteAcls: the ACLs the authorizer decides by, kept in the metadata store.
//!
//! Creating and deleting need ALTER on the cluster, describing needs DESCRIBE on it. With no authorizer
//! configured the three answer SECURITY_DISABLED, as Kafka does.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use nerve_auth::{AclBinding, AclBindingFilter, Operation, PatternType, Permission, ResourceType};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond};
use crate::broker::Broker;
use crate::error::RequestError;
use crate::session::Session;

pub(crate) async fn create(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: CreateAclsRequest = decode(&request)?;
    let refused = refusal(broker, session, Operation::Alter);
    let mut results = Vec::with_capacity(body.creations.len());
    let mut accepted = Vec::new();
    for creation in &body.creations {
        let binding = enums(
            creation.resource_type,
            creation.resource_pattern_type,
            creation.operation,
            creation.permission_type,
        )
        .map(
            |(resource_type, pattern_type, operation, permission)| AclBinding {
                resource_type,
                resource_name: creation.resource_name.to_string(),
                pattern_type,
                principal: creation.principal.to_string(),
                host: creation.host.to_string(),
                operation,
                permission,
            },
        );
        let outcome = match (refused, binding) {
            (Some(error), _) => Err((error, error.to_string())),
            (None, Err(reason)) => Err((ResponseError::InvalidRequest, reason)),
            (None, Ok(binding)) => match binding.validate() {
                Ok(()) => {
                    accepted.push(binding);
                    Ok(())
                }
                Err(e) => Err((ResponseError::InvalidRequest, e.to_string())),
            },
        };
        results.push(outcome);
    }
    if !accepted.is_empty() {
        if let Err(e) = broker
            .change_acls(|acls| {
                for binding in accepted {
                    if !acls.contains(&binding) {
                        acls.push(binding);
                    }
                }
            })
            .await
        {
            // Nothing was stored: every creation that was going through fails with the reason.
            for outcome in results.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err((ResponseError::UnknownServerError, e.to_string()));
            }
        }
    }
    let results = results
        .into_iter()
        .map(|outcome| match outcome {
            Ok(()) => AclCreationResult::default(),
            Err((error, message)) => {
                count_error(broker, &request, error.code());
                AclCreationResult::default()
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        })
        .collect();
    respond(
        &request,
        &CreateAclsResponse::default().with_results(results),
    )
}

pub(crate) fn describe(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: DescribeAclsRequest = decode(&request)?;
    let filter = filter(
        body.resource_type_filter,
        &body.resource_name_filter,
        body.pattern_type_filter,
        &body.principal_filter,
        &body.host_filter,
        body.operation,
        body.permission_type,
    );
    let outcome = match (refusal(broker, session, Operation::Describe), filter) {
        (Some(error), _) => Err((error, error.to_string())),
        (None, Err(refused)) => Err(refused),
        (None, Ok(filter)) => Ok(broker
            .authorizer
            .as_ref()
            .map(|a| a.matching_acls(&filter))
            .unwrap_or_default()),
    };
    let response = match outcome {
        Ok(bindings) => DescribeAclsResponse::default().with_resources(by_resource(bindings)),
        Err((error, message)) => {
            count_error(broker, &request, error.code());
            DescribeAclsResponse::default()
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    };
    respond(&request, &response)
}

pub(crate) async fn delete(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: DeleteAclsRequest = decode(&request)?;
    let refused = refusal(broker, session, Operation::Alter);
    let mut filters: Vec<Result<AclBindingFilter, (ResponseError, String)>> = body
        .filters
        .iter()
        .map(|f| {
            if let Some(error) = refused {
                return Err((error, error.to_string()));
            }
            filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    // Each filter reports what it matched before any deletion, as Kafka's authorizer does: a binding two
    // filters match is listed under both.
    let mut matched: Vec<Vec<AclBinding>> = vec![Vec::new(); filters.len()];
    let valid: Vec<(usize, AclBindingFilter)> = filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().ok().map(|f| (i, f.clone())))
        .collect();
    if !valid.is_empty() {
        let changed = broker
            .change_acls(|acls| {
                for (i, filter) in &valid {
                    matched[*i] = acls.iter().filter(|b| filter.matches(b)).cloned().collect();
                }
                acls.retain(|b| !valid.iter().any(|(_, f)| f.matches(b)));
            })
            .await;
        if let Err(e) = changed {
            for (i, _) in &valid {
                filters[*i] = Err((ResponseError::UnknownServerError, e.to_string()));
                matched[*i].clear();
            }
        }
    }
    let filter_results = filters
        .iter()
        .zip(matched)
        .map(|(filter, matched)| match filter {
            Err((error, message)) => {
                count_error(broker, &request, error.code());
                DeleteAclsFilterResult::default()
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message.clone())))
            }
            Ok(_) => DeleteAclsFilterResult::default().with_matching_acls(
                matched
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(StrBytes::from_string(b.resource_name))
                            .with_pattern_type(b.pattern_type.code())
                            .with_principal(StrBytes::from_string(b.principal))
                            .with_host(StrBytes::from_string(b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    respond(
        &request,
        &DeleteAclsResponse::default().with_filter_results(filter_results),
    )
}

/// Why the client may not use the ACL APIs at all, if it may not.
fn refusal(broker: &Broker, session: &Session, operation: Operation) -> Option<ResponseError> {
    if broker.authorizer.is_none() {
        return Some(ResponseError::SecurityDisabled);
    }
    (!broker.authorize_cluster(session, operation))
        .then_some(ResponseError::ClusterAuthorizationFailed)
}

/// A DescribeAcls or DeleteAcls filter from its wire fields (null names: any), checked.
fn filter(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclBindingFilter, (ResponseError, String)> {
    let invalid = |reason: String| (ResponseError::InvalidRequest, reason);
    let (resource_type, pattern_type, operation, permission) =
        enums(resource_type, pattern_type, operation, permission).map_err(invalid)?;
    let filter = AclBindingFilter {
        resource_type,
        resource_name: name.as_ref().map(|n| n.to_string()),
        pattern_type,
        principal: principal.as_ref().map(|p| p.to_string()),
        host: host.as_ref().map(|h| h.to_string()),
        operation,
        permission,
    };
    filter.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(filter)
}

/// The four enums of a binding or filter from their wire codes.
fn enums(
    resource_type: i8,
    pattern_type: i8,
    operation: i8,
    permission: i8,
) -> Result<(ResourceType, PatternType, Operation, Permission), String> {
    Ok((
        ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("unknown resource type {resource_type}"))?,
        PatternType::from_code(pattern_type)
            .ok_or_else(|| format!("unknown pattern type {pattern_type}"))?,
        Operation::from_code(operation).ok_or_else(|| format!("unknown operation {operation}"))?,
        Permission::from_code(permission)
            .ok_or_else(|| format!("unknown permission type {permission}"))?,
    ))
}

/// DescribeAcls groups the bindings by resource pattern.
fn by_resource(bindings: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut grouped: std::collections::BTreeMap<(i8, String, i8), Vec<AclDescription>> =
        std::collections::BTreeMap::new();
    for b in bindings {
        grouped
            .entry((
                b.resource_type.code(),
                b.resource_name,
                b.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(b.principal))
                    .with_host(StrBytes::from_string(b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    grouped
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pattern_type)
                .with_acls(acls)
        })
        .collect()
}
