//! The one error type of the API, `ApiError`, and the extractors that turn bad requests into it.
//!
//! Every error leaves the server as JSON `{error, code, field?}` with a meaningful status: `error`
//! stays a human-readable string (the original's clients display `body.error`), `code` is stable
//! and machine-readable, `field` names the offending body or query field when there is one.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;
use xcomponent_core::instance::InstanceId;
use xcomponent_runtime::RuntimeError;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    #[schema(example = "component Shop not found")]
    pub error: String,
    /// What went wrong, for programs (`bad_request`, `unknown_component`, `unknown_instance`, ...).
    #[schema(example = "unknown_component")]
    pub code: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An API error: a status, a stable code, a message and possibly the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Offending field, if any.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// A 400 naming the field at fault.
    pub fn bad_field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
        }
    }

    /// 404 for a component.
    pub fn unknown_component(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_component",
            format!("component {name} not found"),
        )
    }

    /// 404 for a machine.
    pub fn unknown_machine(component: Option<&str>, machine: &str) -> ApiError {
        let message = match component {
            Some(component) => format!("machine {machine} not found in component {component}"),
            None => format!("machine {machine} not found in any component"),
        };
        ApiError::new(StatusCode::NOT_FOUND, "unknown_machine", message)
    }

    /// 404 for a state.
    pub fn unknown_state(machine: &str, state: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_state",
            format!("state {state} not found in machine {machine}"),
        )
    }

    /// 404 for an instance.
    pub fn unknown_instance(id: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_instance", format!("instance {id} not found"))
    }

    /// The store's error: 409 `write_conflict` when another writer stored the same step first
    /// (nothing was changed; reading the instance again and retrying can succeed), else 503
    /// `storage_unavailable`; 400 `unstorable_content` when the store refused what the request
    /// carried (retrying the same request would fail again).
    pub fn storage(error: &xcomponent_core::store::Error) -> ApiError {
        match error {
            xcomponent_core::store::Error::Rejected(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "unstorable_content",
                format!(
                    "the store refused what this request carries, nothing was changed: {error}"
                ),
            ),
            xcomponent_core::store::Error::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "write_conflict",
                format!("another writer changed this first, nothing was changed: {error}"),
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("the store failed: {error}"),
            ),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code.to_owned(),
            field: self.field.clone(),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> ApiError {
        let message = error.to_string();
        match error {
            RuntimeError::UnknownComponent(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_component", message)
            }
            RuntimeError::UnknownMachine { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_machine", message)
            }
            RuntimeError::UnknownInstance(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_instance", message)
            }
            RuntimeError::SingletonExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "singleton_exists", message)
            }
            RuntimeError::DuplicateInstance(_) => {
                ApiError::new(StatusCode::CONFLICT, "duplicate_instance", message)
            }
            RuntimeError::Storage(error) => ApiError { message, ..ApiError::storage(&error) },
            RuntimeError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
            }
            RuntimeError::NotOwner { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "partition_elsewhere", message)
            }
            // Routes that can be answered over a bus reply 202 themselves (`AcceptedReply`).
            RuntimeError::Accepted { .. } => {
                ApiError::new(StatusCode::ACCEPTED, "accepted", message)
            }
            RuntimeError::Unsupported(_) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported", message)
            }
            RuntimeError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
            }
            RuntimeError::InvalidField { field, message } => ApiError::bad_field(&field, message),
            RuntimeError::PayloadTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            RuntimeError::ContextSchema { violation, .. } => ApiError {
                field: Some(format!("context.{}", violation.field)),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "context_schema", message)
            },
            RuntimeError::DataTooLarge { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "data_too_large", message)
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl From<xcomponent_core::store::Error> for ApiError {
    fn from(error: xcomponent_core::store::Error) -> ApiError {
        ApiError::storage(&error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => {
                // serde_path_to_error's text starts with the path: "machineName: invalid type ...".
                let detail = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&text);
                let field = detail
                    .split_once(": ")
                    .map(|(path, _)| path.to_owned())
                    .filter(|path| !path.contains(' '));
                let field = field.or_else(|| missing_field(detail));
                ApiError {
                    field,
                    ..ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("invalid request body: {detail}"),
                    )
                }
            }
            JsonRejection::JsonSyntaxError(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not valid JSON: {text}"),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ),
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(status, "payload_too_large", "the request body is too large")
            }
            _ => ApiError::new(status, "bad_request", text),
        }
    }
}

/// `missing field `x`` → `x`.
fn missing_field(detail: &str) -> Option<String> {
    let rest = detail.split("missing field `").nth(1)?;
    Some(rest.split('`').next()?.to_owned())
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        let text = rejection.body_text();
        let detail =
            text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_owned();
        let field = detail
            .split_once(": ")
            .map(|(path, _)| path.to_owned())
            .filter(|path| !path.contains(' '));
        ApiError {
            field,
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid query string: {detail}"),
            )
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid path: {}", rejection.body_text()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "request failed");
        }
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Parses an instance id from a path segment (400 when it is not a UUID).
pub fn parse_instance_id(text: &str) -> Result<InstanceId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("{text:?} is not an instance id (a UUID)"),
        )
    })
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
pub(crate) fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A body that could not be read: 413 `payload_too_large` past the body limit, else 400.
pub(crate) fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

/// `Json<T>` whose rejections are `ApiError`s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes =
            axum::body::Bytes::from_request(request, state).await.map_err(body_rejection)?;
        // serde would also read a struct from an array; the API only takes objects.
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be a JSON object",
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        if let Some((field, literal)) = crate::integers::out_of_range(&bytes) {
            return Err(ApiError::bad_field(
                &field,
                format!(
                    "{field}: the integer {literal} does not fit in 64 bits (-2^63 to 2^64-1) and \
                     would lose digits; send it as a string"
                ),
            ));
        }
        Ok(ApiJson(value))
    }
}

/// `Query<T>` whose rejections are `ApiError`s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// `Path<T>` whose rejections are `ApiError`s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::ApiError;
    use axum::http::StatusCode;
    use xcomponent_core::store::Error;
    use xcomponent_runtime::RuntimeError;

    #[test]
    fn a_write_conflict_is_409_and_other_store_failures_503() {
        let conflict = Error::Conflict {
            instance_id: "0190a6f2-0000-7000-8000-000000000001".parse().expect("uuid"),
            seq: 3,
        };
        let error = ApiError::from(RuntimeError::Storage(conflict.clone()));
        assert_eq!((error.status, error.code), (StatusCode::CONFLICT, "write_conflict"));
        assert!(error.message.contains("nothing was changed"), "{}", error.message);
        assert_eq!(ApiError::from(conflict).status, StatusCode::CONFLICT);
        for failure in [
            Error::Unavailable("down".into()),
            Error::Corrupt("bad row".into()),
            Error::Config("bad url".into()),
        ] {
            let error = ApiError::from(RuntimeError::Storage(failure));
            assert_eq!(
                (error.status, error.code),
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            );
        }
    }
}
