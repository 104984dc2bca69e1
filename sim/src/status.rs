//! API errors as Kubernetes `Status` objects.

use serde_json::{Value, json};

/// Seconds a client is told to wait after a 429.
pub(crate) const RETRY_AFTER_SECONDS: u64 = 1;

/// The `reason` of a failed API call, as in `metav1.StatusReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 409 on create.
    AlreadyExists,
    /// 409 on a stale resourceVersion or an apply conflict.
    Conflict,
    /// 410 for a compacted resourceVersion.
    Expired,
    /// 415.
    UnsupportedMediaType,
    /// 422.
    Invalid,
    /// 429.
    TooManyRequests,
    /// 500.
    InternalError,
}

impl Reason {
    /// The HTTP status code.
    pub(crate) fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Expired => 410,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::TooManyRequests => 429,
            Reason::InternalError => 500,
        }
    }

    /// The `reason` string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "BadRequest",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Expired => "Expired",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::Invalid => "Invalid",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
        }
    }
}

/// A failed API call; becomes a `Status` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason:?}: {message}")]
pub(crate) struct ApiError {
    /// Why it failed.
    pub(crate) reason: Reason,
    /// Human-readable message, worded like the apiserver's.
    pub(crate) message: String,
    /// `details` (name, group, kind, causes), when known.
    pub(crate) details: Option<Value>,
}

impl ApiError {
    /// An error without details.
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// Adds `details` naming the object.
    pub(crate) fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": group, "kind": kind}));
        self
    }

    /// 404 for an object.
    pub(crate) fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            Reason::NotFound,
            format!("{} \"{name}\" not found", qualified(resource, group)),
        )
        .with_details(group, resource, name)
    }

    /// 409 AlreadyExists.
    pub(crate) fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            Reason::AlreadyExists,
            format!("{} \"{name}\" already exists", qualified(resource, group)),
        )
        .with_details(group, resource, name)
    }

    /// 409 Conflict for a stale resourceVersion.
    pub(crate) fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(resource, group)
            ),
        )
        .with_details(group, resource, name)
    }

    /// 422 Invalid.
    pub(crate) fn invalid(kind: &str, name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            Reason::Invalid,
            format!("{kind} \"{name}\" is invalid: {message}"),
        )
        .with_details("", kind, name)
    }

    /// 400 BadRequest.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    /// 410 Expired for a watch or list from a compacted resourceVersion.
    pub(crate) fn expired(rv: u64, oldest: u64) -> Self {
        Self::new(
            Reason::Expired,
            format!("too old resource version: {rv} ({oldest})"),
        )
    }

    /// The `Status` object.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.reason.code(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        if self.reason == Reason::TooManyRequests {
            status["details"] = json!({"retryAfterSeconds": RETRY_AFTER_SECONDS});
        }
        status
    }
}

/// A `Status` with `status: Success` (answers some deletes).
pub(crate) fn success_status(group: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": kind, "uid": uid},
    })
}

fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_has_the_kubernetes_shape() {
        let s = ApiError::not_found("", "pods", "web-0").to_status();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["message"], "pods \"web-0\" not found");
        assert_eq!(s["details"]["name"], "web-0");
        let s = ApiError::new(Reason::TooManyRequests, "slow down").to_status();
        assert_eq!(s["code"], 429);
        assert_eq!(s["details"]["retryAfterSeconds"], RETRY_AFTER_SECONDS);
    }
}
