//! The operator API's OpenAPI 3.1 document, served at `GET /admin/v1/openapi.json` without a
//! token (it describes the API, like the public source; it holds no secret).
//!
//! It is generated from the code, so it cannot drift: every handler carries
//! `#[utoipa::path]`, the types it (de)serializes derive `ToSchema` (the store's records
//! behind `tidings-store`'s `openapi` feature), and `admin/mod.rs` registers each route and
//! its documentation with one `routes!` line. What no single handler says is added here, in
//! one place: the `/admin/v1` prefix, the bearer security schemes, and the errors that
//! every operation can answer because of the layers around it (401/403 from the token
//! check, 400 from the extractors, 413 from the body limit, 503 when the store is away).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidings_core::catalog::Catalog;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::error::Problem;
use crate::state::AppState;

/// The security scheme of the admin token (every operation but this document's).
pub const ADMIN_TOKEN: &str = "admin_token";
/// The security scheme of publisher tokens (the publish operations only).
pub const PUBLISHER_TOKEN: &str = "publisher_token";
/// Where the operator API is nested.
pub const PREFIX: &str = "/admin/v1";
/// The media type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tidings operator API",
        description = "The operator API of Tidings, a self-hosted Events API server: the \
                       directory (enterprises, teams, users, conversations), apps and their \
                       installations and tokens, publishing events, the delivery log, \
                       insights. Every call takes `Authorization: Bearer <admin token>` \
                       (publisher tokens may only publish); errors are \
                       `application/problem+json`. Lists take `?limit=` (1-1000, default \
                       100) and `?cursor=` and answer `{items, next_cursor}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(Problem, InnerEvent, BotEventType, UserEventType)),
    tags(
        (name = "directory", description = "Enterprises, teams, users and conversations"),
        (name = "apps", description = "Apps, their secrets and app-level tokens"),
        (name = "installations", description = "Installing apps in teams"),
        (name = "events", description = "Publishing events and reading them back"),
        (name = "deliveries", description = "The delivery log and redelivery"),
        (name = "insights", description = "Event and delivery counts, key events"),
        (name = "operator", description = "Publisher tokens"),
        (name = "openapi", description = "This document"),
    ),
    modifiers(&Security),
)]
struct ApiDoc;

/// The operator API's OpenAPI document: the routes `admin::routes` serves, documented by
/// their handlers, under `/admin/v1`, with the shared security and error responses and the
/// event types of `catalog` (built-in and configured) as the subscription enums.
pub fn document(catalog: &Catalog) -> serde_json::Value {
    let (_, api) = super::routes(usize::MAX, 1, std::time::Duration::ZERO)
        .merge(super::public_routes())
        .split_for_parts();
    let mut doc = ApiDoc::openapi().nest(PREFIX, api);
    // The router's default info (from Cargo) is replaced by ApiDoc's; the version is ours.
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    CommonResponses.modify(&mut doc);
    let mut json = serde_json::to_value(&doc).unwrap_or_default();
    refine(&mut json, catalog);
    json
}

/// What the derives cannot say: the catalog's event types as enums (they depend on the
/// configuration), and the installation body's "one of these, at least" rules.
fn refine(doc: &mut serde_json::Value, catalog: &Catalog) {
    use serde_json::json;
    let schemas = &mut doc["components"]["schemas"];
    let names = |bot: bool| -> Vec<String> {
        catalog
            .iter()
            .filter(|t| if bot { t.bot } else { t.user })
            .map(|t| t.name.clone())
            .collect()
    };
    schemas["BotEventType"]["enum"] = json!(names(true));
    schemas["UserEventType"]["enum"] = json!(names(false));
    // team_id or enterprise_id (alone: an org-wide install), not null (null is absent to
    // the server); a bot or a user scope.
    schemas["Install"]["allOf"] = json!([
        {"anyOf": [
            {"required": ["team_id"], "properties": {"team_id": {"type": "string"}}},
            {"required": ["enterprise_id"], "properties": {"enterprise_id": {"type": "string"}}},
        ]},
        {"anyOf": [
            {"required": ["bot_scopes"], "properties": {"bot_scopes": {"minItems": 1}}},
            {"required": ["user_scopes"], "properties": {"user_scopes": {"minItems": 1}}},
        ]},
    ]);
}

/// `GET /admin/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi_document",
    tag = "openapi",
    security(()),
    responses(
        (status = 200, description = "This document (OpenAPI 3.1)", body = serde_json::Value,
         content_type = "application/json"),
    ),
)]
pub async fn openapi_json(State(s): State<AppState>) -> Response {
    Json(document(&s.catalog)).into_response()
}

/// The two bearer schemes; the admin token is required everywhere unless an operation
/// says otherwise (the publish operations also take a publisher token, this document
/// takes none).
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token (`TIDINGS_ADMIN_TOKEN`, `admin_token`, or the \
                         generated `<data_dir>/admin-token`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            PUBLISHER_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A publisher token (`tdk_pub_…`, from `POST /admin/v1/publisher_tokens`): \
                         the publish operations only",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            ADMIN_TOKEN,
            Vec::<String>::new(),
        )]);
    }
}

/// The shared error responses, in `components.responses`, and added to every operation
/// they apply to unless its handler documents that status itself.
struct CommonResponses;

const BAD_REQUEST: &str = "BadRequest";
const UNAUTHORIZED: &str = "Unauthorized";
const FORBIDDEN: &str = "Forbidden";
const NOT_FOUND: &str = "NotFound";
const TOO_LARGE: &str = "TooLarge";
const UNAVAILABLE: &str = "Unavailable";

fn problem(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                BAD_REQUEST,
                "Malformed: a parameter or body field is missing, of the wrong type or shape \
                 (`errors` names it)",
            ),
            (
                UNAUTHORIZED,
                "No token, or not a valid one (`Authorization: Bearer <admin token>`)",
            ),
            (
                FORBIDDEN,
                "The token may not do this (a publisher token outside the publish operations, \
                 or a dashboard session without its CSRF token)",
            ),
            (NOT_FOUND, "An object named in the path does not exist"),
            (
                TOO_LARGE,
                "The request body is larger than `server.max_body_bytes`",
            ),
            (
                UNAVAILABLE,
                "The store cannot be reached (PostgreSQL away); retry later",
            ),
        ] {
            components
                .responses
                .insert(name.to_string(), RefOr::T(problem(description)));
        }
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                add_common(op);
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn add_common(op: &mut Operation) {
    // An operation whose only requirement is the empty one needs no token.
    let public = op
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
    if public {
        return;
    }
    let params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let path_params = op.parameters.as_ref().is_some_and(|p| {
        p.iter().any(|p| {
            matches!(p, RefOr::T(p) if p.parameter_in == utoipa::openapi::path::ParameterIn::Path)
        })
    });
    let body = op.request_body.is_some();
    let mut add = |status: &str, name: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    };
    if params || body {
        add("400", BAD_REQUEST);
    }
    add("401", UNAUTHORIZED);
    add("403", FORBIDDEN);
    if path_params {
        add("404", NOT_FOUND);
    }
    if body {
        add("413", TOO_LARGE);
    }
    add("503", UNAVAILABLE);
}

// --- shared parameters ---------------------------------------------------------------------
// Path ids are checked for shape before any lookup (400 otherwise), so their patterns are
// the shapes `tidings_core::ids` accepts: the kind's prefix and 2 to 30 of A-Z, 0-9.

/// `?limit=&cursor=` of every paginated list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page: opaque, made by the server (format `cursor`).
    #[param(format = "cursor")]
    cursor: Option<String>,
}

/// `{app}` in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AppPath {
    /// The app's id.
    #[param(pattern = "^A[A-Z0-9]{2,30}$", example = "A0HELLO")]
    app: String,
}

/// `{team}` in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TeamPath {
    /// The team's id.
    #[param(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    team: String,
}

/// `{team}` and `{channel}` in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ConversationPath {
    /// The team's id.
    #[param(pattern = "^T[A-Z0-9]{2,30}$", example = "T0ACME")]
    team: String,
    /// The conversation's id (`C` public, `G` private or group DM, `D` DM).
    #[param(pattern = "^[CGD][A-Z0-9]{2,30}$", example = "C0GENERAL")]
    channel: String,
}

/// The inner event of a publish: any JSON object with a `type`.
pub struct InnerEvent;

impl utoipa::PartialSchema for InnerEvent {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "The inner event as Slack sends it in `event`: a JSON object whose `type` \
                 (with `channel_type` for messages) names a catalog event type \
                 (`GET /admin/v1/event_types`); `event_ts` is filled in when absent.",
            ))
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .required("type")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .examples([serde_json::json!({
                "type": "message", "channel": "C0GENERAL", "user": "U0ALICE", "text": "hello"
            })])
            .into()
    }
}

impl ToSchema for InnerEvent {}

/// A subscription name from the catalog that bots may receive (`bot_events`).
pub struct BotEventType;

impl utoipa::PartialSchema for BotEventType {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        event_type_schema("An event type of the catalog that bots may subscribe to")
    }
}

impl ToSchema for BotEventType {}

/// A subscription name from the catalog that installing users may receive (`user_events`).
pub struct UserEventType;

impl utoipa::PartialSchema for UserEventType {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        event_type_schema("An event type of the catalog that users may subscribe to")
    }
}

impl ToSchema for UserEventType {}

/// The enum is filled in from the running server's catalog by [`document`].
fn event_type_schema(description: &str) -> RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .into()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    async fn state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = crate::config::Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.server.data_dir = dir.path().to_path_buf();
        config.server.admin_token = Some("tdk_admin_openapi_unit_test".into());
        let booted = crate::boot::boot(config, false).await.expect("boot");
        (booted.state, dir)
    }

    /// `(path, methods)` of every route `router` serves under `/admin/v1`, read from the
    /// router itself: axum's `Debug` lists each route's path and its `Allow` header. (Not a
    /// stable format, hence the sanity checks on what is found: a change in axum fails this
    /// test loudly, never silently.)
    fn served_routes(router: &axum::Router) -> BTreeMap<String, BTreeSet<String>> {
        let text = format!("{router:?}");
        // The main path router comes first; the fallback router's paths follow it.
        let main = &text[..text.find("fallback_router:").unwrap_or(text.len())];
        let mut methods: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        let mut paths: BTreeMap<u64, String> = BTreeMap::new();
        let mut rest = main;
        while let Some(i) = rest.find("RouteId(") {
            rest = &rest[i + "RouteId(".len()..];
            let Some(end) = rest.find(')') else { break };
            let Ok(id) = rest[..end].parse::<u64>() else {
                continue;
            };
            let after = &rest[end + 1..];
            if let Some(quoted) = after.strip_prefix(": \"") {
                let path = &quoted[..quoted.find('"').unwrap_or(0)];
                paths.insert(id, path.to_string());
            } else if after.starts_with(": MethodRouter(") {
                let allow = after
                    .find("allow_header: Bytes(b\"")
                    .map(|j| &after[j + "allow_header: Bytes(b\"".len()..])
                    .map(|a| &a[..a.find('"').unwrap_or(0)])
                    .unwrap_or("");
                methods.insert(
                    id,
                    allow
                        .split(',')
                        .filter(|m| !m.is_empty() && *m != "HEAD")
                        .map(str::to_lowercase)
                        .collect(),
                );
            }
        }
        paths
            .into_iter()
            .filter(|(_, p)| p.starts_with("/admin/v1/"))
            .map(|(id, p)| (p, methods.remove(&id).unwrap_or_default()))
            .collect()
    }

    fn documented_routes(doc: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
        let methods = [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ];
        doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .map(|(path, item)| {
                let ms = item
                    .as_object()
                    .expect("path item")
                    .keys()
                    .filter(|k| methods.contains(&k.as_str()))
                    .cloned()
                    .collect();
                (path.clone(), ms)
            })
            .collect()
    }

    #[tokio::test]
    async fn the_document_lists_every_route_the_router_serves() {
        let (s, _dir) = state().await;
        let doc = document(&s.catalog);
        let served = served_routes(&crate::router(s));
        // The parser found the routes at all (and their methods).
        assert!(served.len() >= 30, "parsed only {served:?}");
        assert!(
            served.values().all(|m| !m.is_empty()),
            "a route without methods: {served:?}"
        );
        let documented = documented_routes(&doc);
        for (path, methods) in &served {
            assert_eq!(
                documented.get(path),
                Some(methods),
                "{path} is served with {methods:?} but documented with {:?}: register it \
                 with routes!(…) in admin::routes, with #[utoipa::path] on its handler",
                documented.get(path)
            );
        }
        assert_eq!(served, documented);
    }

    #[tokio::test]
    async fn a_route_added_without_documentation_is_caught() {
        // The check above really sees routes that bypass routes!(…).
        let (s, _dir) = state().await;
        let sneaky = crate::router(s.clone()).merge(
            axum::Router::new()
                .route("/admin/v1/sneaky", axum::routing::get(|| async { "" }))
                .route(
                    "/admin/v1/apps/{app}/sneaky",
                    axum::routing::post(|| async { "" }),
                ),
        );
        let served = served_routes(&sneaky);
        assert_eq!(
            served.get("/admin/v1/sneaky"),
            Some(&BTreeSet::from(["get".to_string()]))
        );
        let documented = documented_routes(&document(&s.catalog));
        assert_ne!(served, documented);
    }

    /// The OpenAPI Initiative's schema of OpenAPI 3.1 documents
    /// (<https://spec.openapis.org/oas/3.1/schema/2022-10-07>, Apache-2.0), as shipped by
    /// the `openapi-spec-validator` package.
    const OAS_3_1_SCHEMA: &str = include_str!("oas-3.1-schema.json");

    #[tokio::test]
    async fn the_document_validates_as_openapi_3_1() {
        let (s, _dir) = state().await;
        let doc = document(&s.catalog);
        assert_eq!(doc["openapi"], "3.1.0");
        let schema: serde_json::Value = serde_json::from_str(OAS_3_1_SCHEMA).expect("schema");
        let validator = jsonschema::validator_for(&schema).expect("the OAS 3.1 schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        // (And the validator does look: a broken document fails it.)
        let mut broken = doc.clone();
        broken["paths"]["/admin/v1/apps"]["get"]["responses"] = "none".into();
        assert!(!validator.is_valid(&broken));
        // The OAS schema leaves Schema Objects to JSON Schema 2020-12: check each.
        for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
            let mut schema = schema.clone();
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema".into();
            assert!(
                jsonschema::meta::validate(&schema).is_ok(),
                "components.schemas.{name} is not a valid JSON Schema: {:?}",
                jsonschema::meta::validate(&schema).err()
            );
        }
        // Every local $ref resolves, and operation ids are unique.
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 50, "{refs:?}");
        for r in &refs {
            assert!(
                r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_some(),
                "{r} does not resolve"
            );
        }
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("item").values() {
                if let Some(id) = op.get("operationId").and_then(|i| i.as_str()) {
                    assert!(ids.insert(id.to_string()), "operationId {id} twice");
                }
            }
        }
    }

    #[tokio::test]
    async fn an_installation_body_names_a_team_or_an_enterprise_and_a_scope() {
        // What the server refuses with 400 the document must call invalid (schemathesis
        // found {"enterprise_id": null} passing the schema and refused).
        let (s, _dir) = state().await;
        let doc = document(&s.catalog);
        let v = jsonschema::validator_for(&doc["components"]["schemas"]["Install"])
            .expect("the Install schema compiles");
        let base =
            serde_json::json!({"installer_user_id": "U0ALICE", "bot_scopes": ["chat:write"]});
        let with = |k: &str, val: serde_json::Value| {
            let mut b = base.clone();
            b[k] = val;
            b
        };
        assert!(v.is_valid(&with("team_id", "T0ACME".into())));
        assert!(v.is_valid(&with("enterprise_id", "E0ACME".into())));
        assert!(!v.is_valid(&base), "neither team nor enterprise");
        assert!(!v.is_valid(&with("enterprise_id", serde_json::Value::Null)));
        assert!(!v.is_valid(&with("team_id", serde_json::Value::Null)));
        let mut no_scope = with("team_id", "T0ACME".into());
        no_scope["bot_scopes"] = serde_json::json!([]);
        assert!(!v.is_valid(&no_scope), "no scope at all");
        no_scope["user_scopes"] = serde_json::json!(["reactions:read"]);
        assert!(v.is_valid(&no_scope));
    }

    fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_string());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn every_operation_but_the_document_needs_the_admin_token() {
        let (s, _dir) = state().await;
        let doc = document(&s.catalog);
        assert_eq!(doc["security"], serde_json::json!([{ADMIN_TOKEN: []}]));
        assert_eq!(
            doc["components"]["securitySchemes"][ADMIN_TOKEN]["scheme"],
            "bearer"
        );
        let openapi = &doc["paths"]["/admin/v1/openapi.json"]["get"];
        assert_eq!(openapi["security"], serde_json::json!([{}]));
        let publish = &doc["paths"]["/admin/v1/events"]["post"];
        assert_eq!(
            publish["security"],
            serde_json::json!([{ADMIN_TOKEN: []}, {PUBLISHER_TOKEN: []}])
        );
        assert_eq!(
            publish["responses"]["401"]["$ref"],
            "#/components/responses/Unauthorized"
        );
        // The catalog's types, split by side: star_added is user-only.
        let bot = &doc["components"]["schemas"]["BotEventType"]["enum"];
        let user = &doc["components"]["schemas"]["UserEventType"]["enum"];
        assert!(bot
            .as_array()
            .expect("enum")
            .contains(&"message.channels".into()));
        assert!(!bot.as_array().expect("enum").contains(&"star_added".into()));
        assert!(user
            .as_array()
            .expect("enum")
            .contains(&"star_added".into()));
    }
}
