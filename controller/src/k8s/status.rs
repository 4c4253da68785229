//! What kube-apiserver answers when it refuses a request, and how the
//! controller reads those answers.
//!
//! The builders reproduce the `Status` objects of apimachinery's
//! `api/errors` constructors (`NewNotFound`, `NewConflict`,
//! `NewAlreadyExists`, `NewInvalid`, `NewGone`): code, reason, message
//! wording and `details` (name, group, kind, causes with the field path).
//! They exist once so that the in-memory API server and the tower-test
//! mocks answer exactly as the real server does, and every answer goes
//! through the same [`to_error`] that production uses. Wave 1 shipped two
//! bugs because mocks answered 409 where the server answers 422.

use kube::core::response::{StatusCause, StatusDetails, StatusSummary};
use kube::core::Status;

use super::{Kind, KubeError};

fn failure(code: u16, reason: &str, message: String, details: StatusDetails) -> Status {
    Status {
        status: Some(StatusSummary::Failure),
        code,
        message,
        metadata: None,
        reason: reason.into(),
        details: Some(details),
    }
}

/// `group/resource` as messages print it: `pods`, `leases.coordination.k8s.io`.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(group: &str, resource: &str, name: &str) -> StatusDetails {
    StatusDetails {
        name: name.into(),
        group: group.into(),
        kind: resource.into(),
        uid: String::new(),
        causes: Vec::new(),
        retry_after_seconds: 0,
    }
}

/// 404 for a named object.
pub fn not_found(group: &str, resource: &str, name: &str) -> Status {
    failure(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", qualified(group, resource)),
        details(group, resource, name),
    )
}

/// 409 when a write's resourceVersion is not the stored one.
pub fn conflict(group: &str, resource: &str, name: &str) -> Status {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            qualified(group, resource)
        ),
        details(group, resource, name),
    )
}

/// 409 when a create names an object that exists.
pub fn already_exists(group: &str, resource: &str, name: &str) -> Status {
    failure(
        409,
        "AlreadyExists",
        format!("{} \"{name}\" already exists", qualified(group, resource)),
        details(group, resource, name),
    )
}

/// 410 when a watch's resourceVersion was compacted away.
pub fn gone(message: &str) -> Status {
    failure(410, "Expired", message.into(), details("", "", ""))
}

/// One validation failure: the field path, the value (as the server
/// quotes it) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

impl FieldError {
    /// `field: Invalid value: "value": detail`.
    pub fn invalid(field: &str, value: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            detail: format!("Invalid value: {value:?}: {detail}"),
        }
    }
    pub fn required(field: &str) -> FieldError {
        FieldError {
            field: field.into(),
            detail: "Required value".into(),
        }
    }
    pub fn too_long(field: &str, limit: usize) -> FieldError {
        FieldError {
            field: field.into(),
            detail: format!("Too long: may not be more than {limit} bytes"),
        }
    }
    pub fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            detail: format!("Forbidden: {detail}"),
        }
    }
}

/// 422 with one cause per field error, worded as `NewInvalid` words it:
/// `Pod "web" is invalid: metadata.uid: Invalid value: "u-1": field is
/// immutable`.
pub fn invalid(api_kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Status {
    let what = if group.is_empty() {
        api_kind.to_string()
    } else {
        format!("{api_kind}.{group}")
    };
    let list: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.detail))
        .collect();
    let joined = if list.len() == 1 {
        list[0].clone()
    } else {
        format!("[{}]", list.join(", "))
    };
    failure(
        422,
        "Invalid",
        format!("{what} \"{name}\" is invalid: {joined}"),
        StatusDetails {
            name: name.into(),
            group: group.into(),
            kind: api_kind.into(),
            uid: String::new(),
            retry_after_seconds: 0,
            causes: errors
                .iter()
                .map(|e| StatusCause {
                    reason: cause_reason(&e.detail).into(),
                    message: e.detail.clone(),
                    field: e.field.clone(),
                })
                .collect(),
        },
    )
}

fn cause_reason(detail: &str) -> &'static str {
    if detail.starts_with("Required") {
        "FieldValueRequired"
    } else if detail.starts_with("Too long") {
        "FieldValueTooLong"
    } else if detail.starts_with("Forbidden") {
        "FieldValueForbidden"
    } else {
        "FieldValueInvalid"
    }
}

/// [`invalid`] for one of the watched kinds.
pub fn invalid_kind(kind: Kind, name: &str, errors: &[FieldError]) -> Status {
    invalid(kind.name(), kind.group(), name, errors)
}

/// The controller's reading of a refusal.
pub fn to_error(s: &Status) -> KubeError {
    let msg = s.message.clone();
    match s.code {
        404 => KubeError::NotFound(msg),
        409 => KubeError::Conflict(msg),
        410 => KubeError::Gone(msg),
        403 => KubeError::Forbidden(msg),
        400 | 422 => KubeError::Invalid {
            message: msg,
            field: s
                .details
                .as_ref()
                .and_then(|d| d.causes.first())
                .map(|c| c.field.clone())
                .filter(|f| !f.is_empty()),
        },
        code => KubeError::Api(format!("{msg} ({code})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_object_reads_as_replaced() {
        let s = invalid(
            "Pod",
            "",
            "web",
            &[FieldError::invalid(
                "metadata.uid",
                "u-1",
                "field is immutable",
            )],
        );
        assert_eq!(s.code, 422);
        assert_eq!(
            s.message,
            "Pod \"web\" is invalid: metadata.uid: Invalid value: \"u-1\": field is immutable"
        );
        assert!(to_error(&s).object_replaced());
        let c = conflict("", "pods", "web");
        assert!(matches!(to_error(&c), KubeError::Conflict(m) if m.contains("has been modified")));
        let l = already_exists("coordination.k8s.io", "leases", "ctl");
        assert_eq!(
            l.message,
            "leases.coordination.k8s.io \"ctl\" already exists"
        );
        assert_eq!(to_error(&not_found("", "pods", "x")).code(), 404);
    }
}
