//! Slack app manifests (the App Manifest API, issue 23): the schema Tidings knows, the
//! rules a manifest must pass, and the part of it Tidings acts on.
//!
//! A manifest is kept as the JSON it was applied from, so fields Tidings does not act on
//! (slash commands, shortcuts, interactivity, unfurl domains, app home, …) are stored and
//! exported unchanged. Known keys are a fixed tree ([`SCHEMA`]); any other key is an
//! error with its JSON pointer, never silently ignored. Checks that need I/O or the
//! server's settings (the SSRF policy on `request_url`, redirect URL syntax, which scopes
//! exist) are the caller's: [`Rules`] carries them in.

use serde_json::{Map, Value};

use crate::catalog::Catalog;

/// The largest manifest accepted, in bytes of JSON.
pub const MAX_BYTES: usize = 64 * 1024;
/// The longest app name Slack accepts.
pub const MAX_NAME_CHARS: usize = 35;

/// One problem, as Slack reports it: a message and the JSON pointer of what it is about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManifestError {
    pub message: String,
    pub pointer: String,
}

fn err(pointer: &str, message: impl Into<String>) -> ManifestError {
    ManifestError {
        message: message.into(),
        pointer: pointer.to_string(),
    }
}

/// What the caller checks (see the module doc).
pub struct Rules<'a> {
    pub catalog: &'a Catalog,
    /// Whether a scope exists.
    pub known_scope: &'a dyn Fn(&str) -> bool,
    /// Why a Request URL is refused (syntax or the SSRF policy), if it is.
    pub request_url: &'a dyn Fn(&str) -> Option<String>,
    /// Why a redirect URL is refused, if it is.
    pub redirect_url: &'a dyn Fn(&str) -> Option<String>,
}

/// The part of a manifest Tidings acts on, with the manifest itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    /// `features.bot_user.display_name`, when the app has a bot user.
    pub bot_user: Option<String>,
    pub bot_scopes: Vec<String>,
    pub user_scopes: Vec<String>,
    pub redirect_urls: Vec<String>,
    pub request_url: Option<String>,
    pub bot_events: Vec<String>,
    pub user_events: Vec<String>,
    pub socket_mode: bool,
    pub token_rotation: bool,
    pub org_deploy: bool,
    /// The whole manifest, as given.
    pub raw: Value,
}

/// A node of the known-keys tree: an object with these keys, or anything (a leaf Tidings
/// stores without looking inside).
pub enum Shape {
    Any,
    Object(&'static [(&'static str, Shape)]),
}

/// Every key Slack's manifest schema has that Tidings knows of.
pub const SCHEMA: Shape = Shape::Object(&[
    (
        "_metadata",
        Shape::Object(&[("major_version", Shape::Any), ("minor_version", Shape::Any)]),
    ),
    (
        "display_information",
        Shape::Object(&[
            ("name", Shape::Any),
            ("description", Shape::Any),
            ("long_description", Shape::Any),
            ("background_color", Shape::Any),
        ]),
    ),
    (
        "features",
        Shape::Object(&[
            ("app_home", Shape::Any),
            (
                "bot_user",
                Shape::Object(&[("display_name", Shape::Any), ("always_online", Shape::Any)]),
            ),
            ("shortcuts", Shape::Any),
            ("slash_commands", Shape::Any),
            ("unfurl_domains", Shape::Any),
            ("workflow_steps", Shape::Any),
            ("assistant_view", Shape::Any),
            ("rich_previews", Shape::Any),
        ]),
    ),
    (
        "oauth_config",
        Shape::Object(&[
            ("redirect_urls", Shape::Any),
            (
                "scopes",
                Shape::Object(&[
                    ("bot", Shape::Any),
                    ("user", Shape::Any),
                    ("bot_optional", Shape::Any),
                    ("user_optional", Shape::Any),
                ]),
            ),
            ("token_management_enabled", Shape::Any),
        ]),
    ),
    (
        "settings",
        Shape::Object(&[
            ("allowed_ip_address_ranges", Shape::Any),
            (
                "event_subscriptions",
                Shape::Object(&[
                    ("request_url", Shape::Any),
                    ("bot_events", Shape::Any),
                    ("user_events", Shape::Any),
                    ("metadata_subscriptions", Shape::Any),
                ]),
            ),
            ("interactivity", Shape::Any),
            ("org_deploy_enabled", Shape::Any),
            ("socket_mode_enabled", Shape::Any),
            ("token_rotation_enabled", Shape::Any),
            ("incoming_webhooks", Shape::Any),
            ("is_hosted", Shape::Any),
            ("function_runtime", Shape::Any),
            ("siws_links", Shape::Any),
        ]),
    ),
    ("functions", Shape::Any),
    ("workflows", Shape::Any),
    ("outgoing_domains", Shape::Any),
    ("types", Shape::Any),
    ("datastores", Shape::Any),
    ("external_auth_providers", Shape::Any),
    ("compliance", Shape::Any),
    ("app_directory", Shape::Any),
]);

/// A JSON pointer token (RFC 6901 escaping).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn check_shape(v: &Value, shape: &Shape, pointer: &str, errors: &mut Vec<ManifestError>) {
    let Shape::Object(keys) = shape else { return };
    let Some(obj) = v.as_object() else {
        errors.push(err(
            if pointer.is_empty() { "/" } else { pointer },
            "must be an object",
        ));
        return;
    };
    for (k, child) in obj {
        let here = format!("{pointer}/{}", escape(k));
        match keys.iter().find(|(name, _)| name == k) {
            Some((_, s)) => check_shape(child, s, &here, errors),
            None => errors.push(err(&here, format!("unknown property {k:?}"))),
        }
    }
}

/// Parses manifest text (JSON) and checks it: the manifest, or every problem found.
pub fn parse(text: &str, rules: &Rules) -> Result<Manifest, Vec<ManifestError>> {
    if text.len() > MAX_BYTES {
        return Err(vec![err(
            "/",
            format!("the manifest is larger than {MAX_BYTES} bytes"),
        )]);
    }
    let raw: Value = serde_json::from_str(text)
        .map_err(|e| vec![err("/", format!("the manifest is not valid JSON: {e}"))])?;
    check(raw, rules)
}

/// Checks a manifest given as a JSON value (see [`parse`]).
pub fn check(raw: Value, rules: &Rules) -> Result<Manifest, Vec<ManifestError>> {
    let mut errors = Vec::new();
    check_shape(&raw, &SCHEMA, "", &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut r = Reader {
        root: &raw,
        errors: &mut errors,
    };
    let name = r
        .string("/display_information/name", true)
        .unwrap_or_default();
    if name.trim().is_empty() && r.errors.is_empty() {
        r.push("/display_information/name", "must not be empty");
    } else if name.chars().count() > MAX_NAME_CHARS {
        r.push(
            "/display_information/name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        );
    }
    let bot_user = if r.get("/features/bot_user").is_some() {
        let d = r.string("/features/bot_user/display_name", true);
        if d.as_deref().is_some_and(|d| d.trim().is_empty()) {
            r.push("/features/bot_user/display_name", "must not be empty");
        }
        d
    } else {
        None
    };
    r.boolean("/features/bot_user/always_online");
    let bot_scopes = r.strings("/oauth_config/scopes/bot");
    let user_scopes = r.strings("/oauth_config/scopes/user");
    for (list, side) in [(&bot_scopes, "bot"), (&user_scopes, "user")] {
        for (i, sc) in list.iter().enumerate() {
            if !(rules.known_scope)(sc) {
                r.push(
                    &format!("/oauth_config/scopes/{side}/{i}"),
                    format!("unknown scope {sc:?}"),
                );
            }
        }
    }
    if !bot_scopes.is_empty() && bot_user.is_none() {
        r.push(
            "/features/bot_user",
            "a bot user is required when the app requests bot scopes",
        );
    }
    let redirect_urls = r.strings("/oauth_config/redirect_urls");
    for (i, u) in redirect_urls.iter().enumerate() {
        if let Some(why) = (rules.redirect_url)(u) {
            r.push(&format!("/oauth_config/redirect_urls/{i}"), why);
        }
    }
    r.boolean("/oauth_config/token_management_enabled");
    let request_url = r.string("/settings/event_subscriptions/request_url", false);
    if let Some(why) = request_url.as_deref().and_then(|u| (rules.request_url)(u)) {
        r.push("/settings/event_subscriptions/request_url", why);
    }
    let bot_events = r.strings("/settings/event_subscriptions/bot_events");
    let user_events = r.strings("/settings/event_subscriptions/user_events");
    events(&mut r, rules.catalog, &bot_events, &bot_scopes, true);
    events(&mut r, rules.catalog, &user_events, &user_scopes, false);
    if !bot_events.is_empty() && bot_user.is_none() {
        r.push(
            "/settings/event_subscriptions/bot_events",
            "a bot user is required to subscribe to bot events",
        );
    }
    let socket_mode = r.boolean("/settings/socket_mode_enabled").unwrap_or(false);
    let token_rotation = r
        .boolean("/settings/token_rotation_enabled")
        .unwrap_or(false);
    let org_deploy = r.boolean("/settings/org_deploy_enabled").unwrap_or(false);
    let subscribed = !bot_events.is_empty() || !user_events.is_empty();
    if subscribed && !socket_mode && request_url.is_none() {
        r.push(
            "/settings/event_subscriptions",
            "Event Subscription requires either Request URL or Socket Mode Enabled",
        );
    }
    if socket_mode && request_url.is_some() {
        r.push(
            "/settings/event_subscriptions/request_url",
            "a Socket Mode app receives events over its WebSocket: remove request_url or \
             set socket_mode_enabled to false",
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Manifest {
        name,
        bot_user,
        bot_scopes,
        user_scopes,
        redirect_urls,
        request_url,
        bot_events,
        user_events,
        socket_mode,
        token_rotation,
        org_deploy,
        raw,
    })
}

/// Every event must exist, be allowed on its side, and be covered by a requested scope.
fn events(r: &mut Reader, catalog: &Catalog, list: &[String], scopes: &[String], bot: bool) {
    let field = if bot { "bot_events" } else { "user_events" };
    for (i, name) in list.iter().enumerate() {
        let here = format!("/settings/event_subscriptions/{field}/{i}");
        let Some(t) = catalog.get(name) else {
            r.push(&here, format!("unknown event {name:?}"));
            continue;
        };
        if !(if bot { t.bot } else { t.user }) {
            r.push(
                &here,
                format!("event {name:?} cannot be subscribed to in {field}"),
            );
            continue;
        }
        let needs = if bot { &t.bot_scopes } else { &t.user_scopes };
        if !needs.is_empty() && !needs.iter().any(|n| scopes.contains(n)) {
            r.push(
                &here,
                format!(
                    "event {name:?} requires the {} scope {} (oauth_config.scopes.{})",
                    if bot { "bot" } else { "user" },
                    needs.join(" or "),
                    if bot { "bot" } else { "user" }
                ),
            );
        }
    }
}

/// Typed reads by JSON pointer that record what is wrong instead of failing.
struct Reader<'a> {
    root: &'a Value,
    errors: &'a mut Vec<ManifestError>,
}

impl Reader<'_> {
    fn get(&self, pointer: &str) -> Option<&Value> {
        self.root.pointer(pointer).filter(|v| !v.is_null())
    }

    fn push(&mut self, pointer: &str, message: impl Into<String>) {
        self.errors.push(err(pointer, message));
    }

    fn string(&mut self, pointer: &str, required: bool) -> Option<String> {
        match self.get(pointer) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.push(pointer, "must be a string");
                None
            }
            None if required => {
                self.push(pointer, "is required");
                None
            }
            None => None,
        }
    }

    fn boolean(&mut self, pointer: &str) -> Option<bool> {
        match self.get(pointer) {
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.push(pointer, "must be a boolean");
                None
            }
            None => None,
        }
    }

    /// A list of distinct strings (absent: empty).
    fn strings(&mut self, pointer: &str) -> Vec<String> {
        let Some(v) = self.get(pointer) else {
            return Vec::new();
        };
        let Some(items) = v.as_array() else {
            self.push(pointer, "must be an array of strings");
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let mut bad = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if !out.iter().any(|o| o == s) => out.push(s.to_string()),
                Some(_) => bad.push((i, "is listed twice")),
                None => bad.push((i, "must be a string")),
            }
        }
        for (i, why) in bad {
            self.push(&format!("{pointer}/{i}"), why);
        }
        out
    }
}

/// The state of an app the manifest's acted-on fields describe (for [`export`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    pub name: String,
    pub request_url: Option<String>,
    pub socket_mode: bool,
    pub bot_events: Vec<String>,
    pub user_events: Vec<String>,
    pub redirect_urls: Vec<String>,
    pub token_rotation: bool,
    pub org_deploy: bool,
}

/// The manifest to export: the stored one (when there is one) with every acted-on field
/// the app no longer matches (the operator may have changed it) set to the app's value.
/// A field that already matches is left as written, so an untouched app's manifest
/// round-trips unchanged.
pub fn export(stored: Option<Value>, app: &AppState, rules: &Rules) -> Value {
    let fresh = stored.is_none();
    let mut raw = stored.unwrap_or_else(|| {
        serde_json::json!({
            "_metadata": {"major_version": 1, "minor_version": 1},
            "display_information": {"name": app.name},
        })
    });
    let current = check(raw.clone(), rules).ok();
    let same = |f: &dyn Fn(&Manifest) -> bool| current.as_ref().is_some_and(f);
    if !same(&|m| m.name == app.name) {
        set(
            &mut raw,
            &["display_information", "name"],
            app.name.clone().into(),
        );
    }
    if !same(&|m| m.request_url == app.request_url) {
        match &app.request_url {
            Some(u) => set(
                &mut raw,
                &["settings", "event_subscriptions", "request_url"],
                u.clone().into(),
            ),
            None => remove(
                &mut raw,
                &["settings", "event_subscriptions", "request_url"],
            ),
        }
    }
    let lists = [
        ("bot_events", &app.bot_events),
        ("user_events", &app.user_events),
    ];
    for (key, list) in lists {
        let matches = same(&|m| {
            let mine = if key == "bot_events" {
                &m.bot_events
            } else {
                &m.user_events
            };
            mine == list
        });
        if !(matches || fresh && list.is_empty()) {
            set(
                &mut raw,
                &["settings", "event_subscriptions", key],
                list.iter().cloned().map(Value::from).collect(),
            );
        }
    }
    if !(same(&|m| m.redirect_urls == app.redirect_urls) || fresh && app.redirect_urls.is_empty()) {
        set(
            &mut raw,
            &["oauth_config", "redirect_urls"],
            app.redirect_urls.iter().cloned().map(Value::from).collect(),
        );
    }
    let flags = [
        ("socket_mode_enabled", app.socket_mode),
        ("token_rotation_enabled", app.token_rotation),
        ("org_deploy_enabled", app.org_deploy),
    ];
    for (key, value) in flags {
        let matches = same(&|m| match key {
            "socket_mode_enabled" => m.socket_mode == value,
            "token_rotation_enabled" => m.token_rotation == value,
            _ => m.org_deploy == value,
        });
        if !matches {
            set(&mut raw, &["settings", key], value.into());
        }
    }
    raw
}

fn set(root: &mut Value, path: &[&str], value: Value) {
    let mut here = root;
    for key in &path[..path.len() - 1] {
        if !here.get(*key).is_some_and(Value::is_object) {
            if let Some(obj) = here.as_object_mut() {
                obj.insert((*key).to_string(), Value::Object(Map::new()));
            }
        }
        match here.get_mut(*key) {
            Some(next) => here = next,
            None => return,
        }
    }
    if let (Some(obj), Some(last)) = (here.as_object_mut(), path.last()) {
        obj.insert((*last).to_string(), value);
    }
}

fn remove(root: &mut Value, path: &[&str]) {
    let mut here = root;
    for key in &path[..path.len() - 1] {
        match here.get_mut(*key) {
            Some(next) => here = next,
            None => return,
        }
    }
    if let (Some(obj), Some(last)) = (here.as_object_mut(), path.last()) {
        obj.remove(*last);
    }
}

#[cfg(test)]
mod tests;
