//! The extractors and the error response of the API: JSON bodies and
//! queries whose rejections are API errors, and the caller's token.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::{Error, ErrorBody};
use crate::model::MAX_BODY;
use crate::store::Scope;

/// An error as an HTTP response: the code's status and
/// `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            log::warn!("{}", self.0);
        }
        let mut resp = (status, Json(ErrorBody { error: self.0 })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// `Json` whose rejections are API errors.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e @ JsonRejection::MissingJsonContentType(_)) => {
                Err(Error::invalid_argument(e.body_text()).into())
            }
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::payload_too_large(
                format!("the request body is larger than {MAX_BODY} bytes"),
            )
            .into()),
            Err(e) => {
                Err(Error::invalid_argument(format!("request body: {}", e.body_text())).into())
            }
        }
    }
}

/// `Query` whose rejections are API errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(Error::invalid_argument(e.body_text()).into())
            }
            Err(e) => Err(Error::invalid_argument(e.body_text()).into()),
        }
    }
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Auth(pub Scope);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Error::unauthenticated("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| Error::unauthenticated("Authorization must be Bearer <token>"))?;
        match state.tokens.lookup(token) {
            Some(scope) => Ok(Auth(scope.clone())),
            None => Err(Error::unauthenticated("unknown token").into()),
        }
    }
}

impl Auth {
    pub(super) fn operator(&self) -> Result<(), Error> {
        match self.0 {
            Scope::Operator => Ok(()),
            Scope::Project(_) => Err(Error::forbidden("this needs an operator token")),
        }
    }
}
