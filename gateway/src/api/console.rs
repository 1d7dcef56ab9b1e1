//! The operator console (issue 7): static HTML, CSS and JavaScript from `gateway/console/`,
//! embedded in the binary at compile time and served at `/` and `/console/...`. No build step,
//! no CDN: the browser loads everything from the gateway and then talks to `/api/v1`.
//!
//! Caching: the page (`/`) is always revalidated (`no-cache` with an `ETag`); the assets live
//! under `/console/{version}/{file}`, where `version` is a hash of every asset, so they can be
//! cached for a year (`immutable`) and a new binary changes every asset URL at once.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the page may load, by the name it is requested under.
const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/console.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../console/icon.svg"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../../console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_bytes!("../../console/api.js"),
    },
    Asset {
        name: "i18n.js",
        content_type: JS,
        body: include_bytes!("../../console/i18n.js"),
    },
    Asset {
        name: "ui.js",
        content_type: JS,
        body: include_bytes!("../../console/ui.js"),
    },
    Asset {
        name: "charts.js",
        content_type: JS,
        body: include_bytes!("../../console/charts.js"),
    },
    Asset {
        name: "live.js",
        content_type: JS,
        body: include_bytes!("../../console/live.js"),
    },
    Asset {
        name: "fleet.js",
        content_type: JS,
        body: include_bytes!("../../console/fleet.js"),
    },
    Asset {
        name: "device.js",
        content_type: JS,
        body: include_bytes!("../../console/device.js"),
    },
    Asset {
        name: "order.js",
        content_type: JS,
        body: include_bytes!("../../console/order.js"),
    },
    Asset {
        name: "reports.js",
        content_type: JS,
        body: include_bytes!("../../console/reports.js"),
    },
    Asset {
        name: "households.js",
        content_type: JS,
        body: include_bytes!("../../console/households.js"),
    },
    Asset {
        name: "steps.js",
        content_type: JS,
        body: include_bytes!("../../console/steps.js"),
    },
    Asset {
        name: "intake.js",
        content_type: JS,
        body: include_bytes!("../../console/intake.js"),
    },
    Asset {
        name: "field.js",
        content_type: JS,
        body: include_bytes!("../../console/field.js"),
    },
    Asset {
        name: "prevention.js",
        content_type: JS,
        body: include_bytes!("../../console/prevention.js"),
    },
    Asset {
        name: "campaigns.js",
        content_type: JS,
        body: include_bytes!("../../console/campaigns.js"),
    },
    Asset {
        name: "stock.js",
        content_type: JS,
        body: include_bytes!("../../console/stock.js"),
    },
];

/// The page; `{{VERSION}}` marks where asset URLs take the version.
const INDEX: &str = include_str!("../../console/index.html");

/// The page may load only what the gateway serves; no inline script or style.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The console's routes: `/`, `/console`, `/console/` (the page) and
/// `/console/{version}/{file}` (the assets). Stateless: merge it into the API router.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/{version}/{file}", get(asset))
}

/// A short hash of every asset's name and bytes (FNV-1a, 64 bit), computed once.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(INDEX.as_bytes());
        for asset in ASSETS {
            feed(asset.name.as_bytes());
            feed(&[0]);
            feed(asset.body);
        }
        format!("{hash:016x}")
    })
}

/// The page with the current version filled in, built once.
fn index_html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| INDEX.replace("{{VERSION}}", version()))
}

async fn index(headers: HeaderMap) -> Response {
    serve_index(&headers)
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    serve_asset(&version, &file)
}

fn serve_index(headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", version());
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let common = [
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    ];
    let mut response = if fresh {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (
            common,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            index_html(),
        )
            .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn serve_asset(requested_version: &str, file: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no console file {file:?}\n"),
        )
            .into_response();
    };
    // An old page asking for an old version gets today's file, but must not keep it.
    let cache = if requested_version == version() {
        IMMUTABLE
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(response: &Response, name: header::HeaderName) -> String {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn every_file_the_page_and_its_modules_load_is_embedded() {
        let page = index_html();
        let prefix = format!("/console/{}/", version());
        let mut referenced: Vec<String> = page
            .match_indices(&prefix)
            .map(|(at, _)| {
                page[at + prefix.len()..]
                    .chars()
                    .take_while(|c| *c != '"')
                    .collect()
            })
            .collect();
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).expect("JavaScript is UTF-8");
            for (at, _) in text.match_indices("from './") {
                let rest = &text[at + "from './".len()..];
                referenced.push(rest.chars().take_while(|c| *c != '\'').collect());
            }
        }
        assert!(referenced.iter().any(|r| r == "app.js"), "{referenced:?}");
        for name in &referenced {
            assert!(
                ASSETS.iter().any(|a| a.name == name.as_str()),
                "{name} is loaded but not embedded"
            );
        }
        for asset in ASSETS {
            let first = std::str::from_utf8(asset.body)
                .expect("text")
                .lines()
                .next()
                .unwrap_or_default();
            assert!(
                first.starts_with("//") || first.starts_with("/*") || first.starts_with("<!--"),
                "{} must open with a comment saying what it is for",
                asset.name
            );
        }
        assert!(!page.contains("{{VERSION}}"));
    }

    #[test]
    fn assets_have_their_content_type_and_are_immutable_at_the_current_version() {
        let response = serve_asset(version(), "app.js");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), IMMUTABLE);
        let css = serve_asset(version(), "console.css");
        assert_eq!(
            header_of(&css, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        let old = serve_asset("0000000000000000", "app.js");
        assert_eq!(old.status(), StatusCode::OK);
        assert_eq!(header_of(&old, header::CACHE_CONTROL), "no-cache");
        assert_eq!(
            serve_asset(version(), "../Cargo.toml").status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_page_is_revalidated_with_its_etag() {
        let response = serve_index(&HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
        assert!(header_of(&response, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
        let etag = header_of(&response, header::ETAG);
        assert_eq!(etag, format!("\"{}\"", version()));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag).expect("header"),
        );
        assert_eq!(serve_index(&headers).status(), StatusCode::NOT_MODIFIED);
    }
}
