//! The command line: `serve`, and commands that wrap the operator API for people and
//! scripts. Every command reads `TIDINGS_URL` and `TIDINGS_ADMIN_TOKEN` (or the flags),
//! prints a short human summary or, with `--json`, the API's JSON; errors exit non-zero with
//! one line.

mod client;
pub use client::Client;
mod manifest;
mod output;
mod publish;
mod redeliveries;
mod trigger;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::serve::ServeOpts;
use output::{print_item, print_list};

/// `tidings --version`: the crate's version and the commit it was built from (see
/// `build.rs`), e.g. "0.1.0 (abc1234 2026-12-06)".
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("TIDINGS_BUILD"), ")");

#[derive(Parser, Debug)]
#[command(
    name = "tidings",
    version = VERSION,
    about = "A self-hosted, Slack-compatible Events API server"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Base URL of the Tidings server.
    #[arg(
        long,
        global = true,
        env = "TIDINGS_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub url: String,
    /// Operator token. Defaults to the contents of ./tidings-data/admin-token when that exists.
    #[arg(
        long,
        global = true,
        env = "TIDINGS_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeOpts),
    /// Enterprises (groups of teams, for org-wide installs).
    #[command(subcommand)]
    Enterprises(EnterpriseCmd),
    /// Teams (workspaces).
    #[command(subcommand)]
    Teams(TeamCmd),
    /// Users of a team.
    #[command(subcommand)]
    Users(UserCmd),
    /// Conversations (channels, DMs) and their members.
    #[command(subcommand)]
    Conversations(ConversationCmd),
    /// Apps.
    #[command(subcommand)]
    Apps(AppCmd),
    /// Install an app in a team (or org-wide); prints the new tokens once.
    Install(InstallOpts),
    /// Publish events: one from an argument or file, or NDJSON from stdin in batches.
    Publish(publish::PublishOpts),
    /// Publish a realistic sample of an event type (from the catalog) into a team.
    Trigger(trigger::TriggerOpts),
    /// Published events.
    #[command(subcommand)]
    Events(EventCmd),
    /// Hold a Socket Mode connection for an app and forward its events to a local URL.
    Listen(crate::listen::ListenOpts),
    /// A local relay: takes publishes, spools them, forwards them to Tidings through outages.
    Relay(crate::relay::RelayOpts),
    /// Deliveries (one event for one app in one team).
    #[command(subcommand)]
    Deliveries(DeliveryCmd),
    /// Bulk replay jobs (started with `tidings apps redeliver`).
    #[command(subcommand)]
    Redeliveries(redeliveries::RedeliveryCmd),
    /// Copy the SQLite store to a file, consistent while the server runs.
    Backup(crate::backup::BackupOpts),
    /// Put a backup in place as a data directory's database (the server stopped).
    Restore(crate::backup::RestoreOpts),
}

#[derive(Subcommand, Debug)]
pub enum EventCmd {
    /// An event with its deliveries and the envelope each sends.
    Show { event_id: String },
}

#[derive(Subcommand, Debug)]
pub enum DeliveryCmd {
    /// An app's deliveries, newest first.
    List {
        #[arg(long)]
        app: String,
        #[arg(long, value_parser = ["pending", "delivered", "failed", "dropped"])]
        status: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    Show {
        id: String,
    },
    /// A new attempt now, outside the retry budget.
    Redeliver {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum EnterpriseCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        id: Option<String>,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum TeamCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        enterprise_id: Option<String>,
    },
    List,
    Show {
        team: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    Create {
        #[arg(long)]
        team: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        real_name: Option<String>,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        id: Option<String>,
    },
    List {
        #[arg(long)]
        team: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConversationCmd {
    /// Create or replace a conversation.
    Put {
        #[arg(long)]
        team: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["public", "private", "im", "mpim"], default_value = "public")]
        kind: String,
        /// Comma-separated user ids.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    Show {
        #[arg(long)]
        team: String,
        id: String,
    },
    /// Add a member.
    Join {
        #[arg(long)]
        team: String,
        id: String,
        #[arg(long)]
        user: String,
    },
    /// Remove a member.
    Leave {
        #[arg(long)]
        team: String,
        id: String,
        #[arg(long)]
        user: String,
    },
}

#[derive(Args, Debug)]
pub struct AppFields {
    #[arg(long)]
    pub request_url: Option<String>,
    #[arg(long)]
    pub socket_mode: Option<bool>,
    /// Comma-separated event types, e.g. message.channels,app_mention
    #[arg(long, value_delimiter = ',')]
    pub bot_events: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    pub user_events: Option<Vec<String>>,
    #[arg(long, value_parser = ["authorizations", "legacy"])]
    pub event_shape: Option<String>,
}

impl AppFields {
    fn into_json(self, mut v: Value) -> Value {
        if let Some(u) = self.request_url {
            v["request_url"] = u.into();
        }
        if let Some(m) = self.socket_mode {
            v["socket_mode"] = m.into();
        }
        if let Some(e) = self.bot_events {
            v["bot_events"] = e.into();
        }
        if let Some(e) = self.user_events {
            v["user_events"] = e.into();
        }
        if let Some(s) = self.event_shape {
            v["event_shape"] = s.into();
        }
        v
    }
}

#[derive(Subcommand, Debug)]
pub enum AppCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: AppFields,
    },
    List,
    Show {
        app: String,
    },
    Update {
        app: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: AppFields,
    },
    /// Create an app-level (xapp-) token; prints it once.
    Token {
        app: String,
        /// Comma-separated: connections:write, authorizations:read
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "connections:write,authorizations:read"
        )]
        scopes: Vec<String>,
    },
    /// Show the app's OAuth client (client_id, redirect URLs, install link), or change it.
    Oauth {
        app: String,
        /// Comma-separated redirect URLs (replaces the list).
        #[arg(long, value_delimiter = ',')]
        redirect_urls: Option<Vec<String>>,
        #[arg(long)]
        token_rotation_enabled: Option<bool>,
        #[arg(long)]
        org_deploy_enabled: Option<bool>,
    },
    /// Give the app a new OAuth client_secret; prints it once (the old one stops working).
    ClientSecret {
        app: String,
    },
    /// Replay the app's failed (or dropped, delivered) deliveries as one rate-bounded job.
    Redeliver(redeliveries::RedeliverOpts),
    /// Create (or, with --app, update) an app from a manifest file, YAML or JSON, with a
    /// configuration token (TIDINGS_CONFIG_TOKEN); prints what changed.
    Apply(manifest::ManifestOpts),
    /// Check a manifest file without applying it (configuration token).
    Validate(manifest::ManifestOpts),
    /// Print an app's manifest as JSON (configuration token; only the app's owner).
    Export(manifest::ExportOpts),
}

#[derive(Args, Debug)]
pub struct InstallOpts {
    #[arg(long)]
    pub app: String,
    #[arg(long)]
    pub team: Option<String>,
    /// For an org-wide install, give this without --team.
    #[arg(long)]
    pub enterprise: Option<String>,
    #[arg(long)]
    pub installer: String,
    #[arg(long, value_delimiter = ',')]
    pub bot_scopes: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    pub user_scopes: Vec<String>,
}

/// Runs one client command.
pub async fn run(g: Global, cmd: Command) -> Result<(), String> {
    // The manifest commands act for a developer (configuration token), not the operator.
    let cmd = match cmd {
        Command::Apps(AppCmd::Apply(o)) => return manifest::apply(&g, o).await,
        Command::Apps(AppCmd::Validate(o)) => return manifest::validate(&g, o).await,
        Command::Apps(AppCmd::Export(o)) => return manifest::export(&g, o).await,
        other => other,
    };
    let c = Client::new(&g)?;
    let json_out = g.json;
    match cmd {
        Command::Serve(_)
        | Command::Listen(_)
        | Command::Relay(_)
        | Command::Backup(_)
        | Command::Restore(_) => {
            unreachable!("handled by main")
        }
        Command::Enterprises(EnterpriseCmd::Create { name, id }) => {
            let v = c
                .post("/enterprises", &with_id(json!({"name": name}), id))
                .await?;
            print_item(json_out, &v, &["id", "name"]);
        }
        Command::Enterprises(EnterpriseCmd::List) => {
            print_list(json_out, &c.get_all("/enterprises").await?, &["id", "name"]);
        }
        Command::Teams(TeamCmd::Create {
            name,
            domain,
            id,
            enterprise_id,
        }) => {
            let mut body = with_id(json!({"name": name, "domain": domain}), id);
            if let Some(e) = enterprise_id {
                body["enterprise_id"] = e.into();
            }
            let v = c.post("/teams", &body).await?;
            print_item(json_out, &v, &["id", "name", "domain", "enterprise_id"]);
        }
        Command::Teams(TeamCmd::List) => {
            print_list(
                json_out,
                &c.get_all("/teams").await?,
                &["id", "name", "domain", "enterprise_id"],
            );
        }
        Command::Teams(TeamCmd::Show { team }) => {
            let v = c.get(&format!("/teams/{}", seg(&team))).await?;
            print_item(json_out, &v, &["id", "name", "domain", "enterprise_id"]);
        }
        Command::Users(UserCmd::Create {
            team,
            name,
            real_name,
            admin,
            id,
        }) => {
            let mut body = with_id(json!({"name": name, "is_admin": admin}), id);
            if let Some(r) = real_name {
                body["real_name"] = r.into();
            }
            let v = c
                .post(&format!("/teams/{}/users", seg(&team)), &body)
                .await?;
            print_item(
                json_out,
                &v,
                &["id", "team_id", "name", "real_name", "is_admin"],
            );
        }
        Command::Users(UserCmd::List { team }) => {
            let items = c.get_all(&format!("/teams/{}/users", seg(&team))).await?;
            print_list(
                json_out,
                &items,
                &["id", "name", "real_name", "is_bot", "is_admin"],
            );
        }
        Command::Conversations(cmd) => conversations(&c, json_out, cmd).await?,
        Command::Publish(o) => publish::run(&c, json_out, o).await?,
        Command::Trigger(o) => trigger::run(&c, json_out, o).await?,
        Command::Events(EventCmd::Show { event_id }) => {
            let v = c.get(&format!("/events/{}", seg(&event_id))).await?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Command::Deliveries(DeliveryCmd::List {
            app,
            status,
            team,
            event_type,
            limit,
        }) => {
            let mut q = format!("/apps/{}/deliveries?limit={limit}", seg(&app));
            for (k, v) in [
                ("status", status),
                ("team_id", team),
                ("event_type", event_type),
            ] {
                if let Some(v) = v {
                    q.push_str(&format!("&{k}={}", seg(&v)));
                }
            }
            let page = c.get(&q).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            print_list(
                json_out,
                &items,
                &[
                    "id",
                    "event_id",
                    "team_id",
                    "event_type",
                    "status",
                    "reason",
                    "created_at",
                ],
            );
        }
        Command::Deliveries(DeliveryCmd::Redeliver { id }) => {
            let v = c
                .post(&format!("/deliveries/{}/redeliver", seg(&id)), &json!({}))
                .await?;
            print_item(json_out, &v, &["id", "event_id", "app_id", "status"]);
        }
        Command::Deliveries(DeliveryCmd::Show { id }) => {
            let v = c.get(&format!("/deliveries/{}", seg(&id))).await?;
            print_item(
                json_out,
                &v,
                &[
                    "id",
                    "event_id",
                    "app_id",
                    "team_id",
                    "event_type",
                    "status",
                    "reason",
                    "attempts",
                ],
            );
        }
        Command::Apps(AppCmd::Redeliver(o)) => redeliveries::start(&c, json_out, o).await?,
        Command::Redeliveries(cmd) => redeliveries::run(&c, json_out, cmd).await?,
        Command::Apps(cmd) => apps(&c, json_out, cmd).await?,
        Command::Install(o) => {
            let mut body = json!({
                "installer_user_id": o.installer,
                "bot_scopes": o.bot_scopes,
                "user_scopes": o.user_scopes,
            });
            if let Some(t) = o.team {
                body["team_id"] = t.into();
            }
            if let Some(e) = o.enterprise {
                body["enterprise_id"] = e.into();
            }
            let v = c
                .post(&format!("/apps/{}/installations", seg(&o.app)), &body)
                .await?;
            print_item(
                json_out,
                &v,
                &[
                    "id",
                    "app_id",
                    "team_id",
                    "enterprise_id",
                    "bot_user_id",
                    "bot_id",
                    "bot_token",
                    "user_token",
                ],
            );
        }
    }
    Ok(())
}

async fn conversations(c: &Client, json_out: bool, cmd: ConversationCmd) -> Result<(), String> {
    const FIELDS: &[&str] = &["id", "team_id", "name", "kind", "members"];
    let v = match cmd {
        ConversationCmd::Put {
            team,
            id,
            name,
            kind,
            members,
        } => {
            let body = json!({"name": name, "kind": kind, "members": members});
            c.put(
                &format!("/teams/{}/conversations/{}", seg(&team), seg(&id)),
                &body,
            )
            .await?
        }
        ConversationCmd::Show { team, id } => {
            c.get(&format!("/teams/{}/conversations/{}", seg(&team), seg(&id)))
                .await?
        }
        ConversationCmd::Join { team, id, user } => {
            let path = format!("/teams/{}/conversations/{}/members", seg(&team), seg(&id));
            c.post(&path, &json!({"user": user})).await?
        }
        ConversationCmd::Leave { team, id, user } => {
            let path = format!(
                "/teams/{}/conversations/{}/members/{}",
                seg(&team),
                seg(&id),
                seg(&user)
            );
            c.delete(&path).await?
        }
    };
    print_item(json_out, &v, FIELDS);
    Ok(())
}

const APP_FIELDS: &[&str] = &[
    "id",
    "name",
    "request_url",
    "request_url_verified",
    "socket_mode",
    "bot_events",
    "user_events",
    "event_shape",
    "events_enabled",
    "disabled_reason",
    "signing_secret",
    "verification_token",
    "client_id",
    "client_secret",
    "redirect_urls",
    "token_rotation_enabled",
];

const OAUTH_FIELDS: &[&str] = &[
    "app_id",
    "client_id",
    "client_secret",
    "redirect_urls",
    "token_rotation_enabled",
    "org_deploy_enabled",
    "install_url",
];

async fn apps(c: &Client, json_out: bool, cmd: AppCmd) -> Result<(), String> {
    match cmd {
        AppCmd::Create { name, id, fields } => {
            let body = fields.into_json(with_id(json!({"name": name}), id));
            print_item(json_out, &c.post("/apps", &body).await?, APP_FIELDS);
        }
        AppCmd::List => {
            let items = c.get_all("/apps").await?;
            print_list(
                json_out,
                &items,
                &["id", "name", "socket_mode", "events_enabled", "request_url"],
            );
        }
        AppCmd::Show { app } => {
            print_item(
                json_out,
                &c.get(&format!("/apps/{}", seg(&app))).await?,
                APP_FIELDS,
            );
        }
        AppCmd::Update { app, name, fields } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = n.into();
            }
            let body = fields.into_json(body);
            print_item(
                json_out,
                &c.patch(&format!("/apps/{}", seg(&app)), &body).await?,
                APP_FIELDS,
            );
        }
        AppCmd::Token { app, scopes } => {
            let v = c
                .post(
                    &format!("/apps/{}/tokens", seg(&app)),
                    &json!({"scopes": scopes}),
                )
                .await?;
            print_item(json_out, &v, &["id", "app_id", "scopes", "token"]);
        }
        AppCmd::Oauth {
            app,
            redirect_urls,
            token_rotation_enabled,
            org_deploy_enabled,
        } => {
            let path = format!("/apps/{}/oauth", seg(&app));
            let mut body = json!({});
            if let Some(u) = redirect_urls {
                body["redirect_urls"] = u.into();
            }
            if let Some(t) = token_rotation_enabled {
                body["token_rotation_enabled"] = t.into();
            }
            if let Some(o) = org_deploy_enabled {
                body["org_deploy_enabled"] = o.into();
            }
            if body.as_object().is_some_and(|o| !o.is_empty()) {
                c.patch(&path, &body).await?;
            }
            print_item(json_out, &c.get(&path).await?, OAUTH_FIELDS);
        }
        AppCmd::ClientSecret { app } => {
            let v = c
                .post(
                    &format!("/apps/{}/client_secret/rotate", seg(&app)),
                    &json!({}),
                )
                .await?;
            print_item(json_out, &v, OAUTH_FIELDS);
        }
        AppCmd::Redeliver(_) => unreachable!("handled by run"),
        AppCmd::Apply(_) | AppCmd::Validate(_) | AppCmd::Export(_) => {
            unreachable!("handled by run before the operator client is made")
        }
    }
    Ok(())
}

fn with_id(mut v: Value, id: Option<String>) -> Value {
    if let Some(id) = id {
        v["id"] = id.into();
    }
    v
}

/// A path segment, percent-encoded so user input cannot change the path.
fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
