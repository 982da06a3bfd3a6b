//! The tenant's web console at `/console/`: a small single-page app (plain
//! HTML, CSS and JavaScript, no build step and no asset from elsewhere)
//! embedded in the binary. It signs in with the API's bearer tokens (kept
//! in the tab's `sessionStorage`) and calls the public API only, so it can
//! do nothing a token could not do with `curl`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The embedded files: name under `/console/`, contents, media type.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", include_str!("../../console/index.html"), HTML),
    ("app.css", include_str!("../../console/app.css"), CSS),
    ("app.js", include_str!("../../console/app.js"), JS),
    ("api.js", include_str!("../../console/api.js"), JS),
    ("dom.js", include_str!("../../console/dom.js"), JS),
    ("list.js", include_str!("../../console/list.js"), JS),
    ("wizard.js", include_str!("../../console/wizard.js"), JS),
    ("detail.js", include_str!("../../console/detail.js"), JS),
];
const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Only this origin's own files and API; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

fn serve(name: &str) -> Response {
    let Some((_, body, content_type)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such console file\n").into_response();
    };
    let mut resp = (StatusCode::OK, *body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A new controller version serves new files: never a stale app.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The console's routes, merged into the API's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { serve("index.html") }))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads only its own two files: nothing from outside.
    #[test]
    fn the_page_names_no_outside_asset() {
        for (name, body, _) in ASSETS {
            for outside in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!body.contains(outside), "{name} names {outside}");
            }
            // Every module it imports is served.
            for import in body.split("from './").skip(1) {
                let file = import.split('\'').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == file),
                    "{name} imports {file}, which is not served"
                );
            }
        }
        let index = ASSETS[0].1;
        assert!(index.contains(r#"src="app.js""#));
        assert!(index.contains(r#"href="app.css""#));
    }
}
