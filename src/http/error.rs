//! `ApiError`: every refusal the API gives, as one value with a status, a stable `code`, a
//! plain message and optional details. Rendered as `{"error": {"code", "message", ...}}`.

use crate::app::AppError;
use crate::domain::ports::StoreError;
use ::http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

/// Boxed: errors are the cold path, and a small `Err` keeps every `Result` small.
#[derive(Debug, Clone)]
pub struct ApiError(Box<ErrorParts>);

#[derive(Debug, Clone)]
struct ErrorParts {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The connection must close after this answer (an unread body is left behind).
    close_connection: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ErrorParts {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            headers: Vec::new(),
            close_connection: false,
        }))
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.0.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.0.headers.push((name, value));
        }
        self
    }

    pub fn closing(mut self) -> ApiError {
        self.0.close_connection = true;
        self
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no route matches this path")
    }

    pub fn method_not_allowed(allowed: &[&str]) -> ApiError {
        let allow = allowed.join(", ");
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("this path accepts {allow}"))
            .with_header(header::ALLOW, &allow)
    }

    pub fn not_implemented(method: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!("this server does not implement the {method} method"),
        )
        .closing()
    }

    /// 429 in place of 401 for a client past `auth.max_failures_per_minute`.
    pub fn too_many_auth_failures(retry_after_secs: u64) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_auth_failures",
            "too many failed authentications from this address; retry after the Retry-After seconds",
        )
        .with_header(header::RETRY_AFTER, &retry_after_secs.to_string())
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send a valid key as `Authorization: Bearer KEY`")
            .with_header(header::WWW_AUTHENTICATE, "Bearer")
    }

    pub fn forbidden() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this route needs an admin key")
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; the server log has the cause",
        )
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).with_header(header::RETRY_AFTER, "1")
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// The plain message the client sees (the body's `message`).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Headers the answer carries besides the body's (`Retry-After`, `Allow`, ...).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.0.headers
    }

    /// The connection must close after this answer (an unread body is left behind).
    pub fn closes_connection(&self) -> bool {
        self.0.close_connection
    }

    pub fn body(&self) -> Value {
        let mut error = Map::with_capacity(self.0.details.len() + 2);
        error.insert("code".into(), json!(self.0.code));
        error.insert("message".into(), json!(self.0.message));
        for (key, value) in &self.0.details {
            error.insert(key.clone(), value.clone());
        }
        json!({ "error": error })
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        if error.is_unavailable() {
            log::warn!("storage unavailable: {error}", error = crate::logging::Chain(&error));
            let message = match &error {
                StoreError::Busy => "the database is locked; retry shortly",
                StoreError::Full => "the database's disk is full; retry once space is freed",
                StoreError::ReadOnly(_) => "the database is read-only",
                _ => "storage is unavailable; retry shortly",
            };
            ApiError::unavailable("storage_unavailable", message)
        } else {
            log::error!("storage error: {error}", error = crate::logging::Chain(&error));
            ApiError::internal()
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> ApiError {
        let message = error.to_string();
        match error {
            AppError::Invalid(message) => ApiError::invalid(message),
            AppError::UnknownMetric { metric, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_metric", message).with("metric", metric)
            }
            AppError::UnknownPlan { plan, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_plan", message).with("plan", plan)
            }
            AppError::UserNotFound(user_id) => {
                ApiError::new(StatusCode::NOT_FOUND, "user_not_found", message).with("user_id", user_id)
            }
            AppError::AccountNotFound(account_id) => {
                ApiError::new(StatusCode::NOT_FOUND, "account_not_found", message).with("account_id", account_id)
            }
            AppError::AccountFull { account_id, max_members } => {
                ApiError::new(StatusCode::CONFLICT, "account_full", message)
                    .with("account_id", account_id)
                    .with("max_members", max_members)
            }
            AppError::GrantNotFound(grant_id) => {
                ApiError::new(StatusCode::NOT_FOUND, "grant_not_found", message).with("grant_id", grant_id)
            }
            AppError::GrantHasNoEffect(_) => ApiError::new(StatusCode::CONFLICT, "grant_has_no_effect", message),
            AppError::OverrideNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "override_not_found", message),
            AppError::IdempotencyKeyReused => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message)
            }
            AppError::CleanupInProgress => ApiError::new(StatusCode::CONFLICT, "cleanup_in_progress", message),
            AppError::EventNotFound => ApiError::new(StatusCode::NOT_FOUND, "event_not_found", message),
            AppError::DeliveryNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "delivery_not_found", message),
            AppError::DeliveryNotFailed(_) => ApiError::new(StatusCode::CONFLICT, "delivery_not_failed", message),
            AppError::ReservationNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "reservation_not_found", message),
            AppError::PeriodNotEnded { period, .. } => {
                ApiError::new(StatusCode::CONFLICT, "period_not_ended", message).with("period", period)
            }
            AppError::Store(error) => error.into(),
        }
    }
}
