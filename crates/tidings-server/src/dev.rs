//! `--dev`: a demo workspace and app, seeded once into an empty store, with their tokens
//! kept in `<data_dir>/dev-credentials.json` (mode 0600) so every dev start can print them.

use serde::{Deserialize, Serialize};
use tidings_core::token::{self, TokenKind};
use tidings_store::*;

use crate::boot::write_secret_file;
use crate::state::AppState;

pub const DEMO_TEAM: &str = "T0DEMO0001";
pub const DEMO_USER: &str = "U0DEMO0001";
pub const DEMO_APP: &str = "A0DEMO0001";
pub const DEMO_CHANNEL: &str = "C0DEMO0001";

/// What `--dev` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevCredentials {
    pub team_id: String,
    pub user_id: String,
    pub channel_id: String,
    pub app_id: String,
    pub bot_user_id: Option<String>,
    pub bot_token: String,
    pub user_token: String,
    pub app_token: String,
    pub signing_secret: String,
}

/// Where the demo workspace's credentials are kept, in the data directory.
pub const CREDENTIALS_FILE: &str = "dev-credentials.json";

/// Seeds the demo workspace if the demo app does not exist yet; returns the credentials
/// (fresh, or as saved by the first dev start; `None` if they were lost).
pub async fn seed(s: &AppState) -> Result<Option<DevCredentials>, String> {
    let file = s.config.server.data_dir.join(CREDENTIALS_FILE);
    if s.store
        .get_app(DEMO_APP)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok()));
    }
    let e = |e: StoreError| format!("seeding the dev workspace: {e}");
    s.store
        .create_team(Team {
            id: DEMO_TEAM.into(),
            name: "Demo Workspace".into(),
            domain: "demo".into(),
            enterprise_id: None,
            created_at: 0,
        })
        .await
        .map_err(e)?;
    s.store
        .create_user(User {
            id: DEMO_USER.into(),
            team_id: Some(DEMO_TEAM.into()),
            enterprise_id: None,
            name: "demo".into(),
            real_name: Some("Demo User".into()),
            is_admin: true,
            is_bot: false,
            app_id: None,
            created_at: 0,
        })
        .await
        .map_err(e)?;
    let app = s
        .store
        .create_app(App {
            id: DEMO_APP.into(),
            name: "Demo App".into(),
            request_url: None,
            request_url_verified: false,
            socket_mode: true,
            bot_events: vec![
                "message.channels".into(),
                "app_mention".into(),
                "reaction_added".into(),
            ],
            user_events: vec![],
            event_shape: EventShape::Authorizations,
            signing_secret: token::random_hex(16),
            verification_token: token::random_secret()[..24].to_string(),
            events_enabled: true,
            disabled_reason: None,
            disabled_at: None,
            created_at: 0,
            version: 0,
            enabled_at_ms: None,
            ..Default::default()
        })
        .await
        .map_err(e)?;
    let bot_token = token::generate(TokenKind::Bot, None);
    let user_token = token::generate(TokenKind::User, None);
    let inst = s
        .store
        .install(NewInstallation {
            id: tidings_core::ids::generate(tidings_core::ids::IdKind::Installation),
            app_id: DEMO_APP.into(),
            team_id: Some(DEMO_TEAM.into()),
            enterprise_id: None,
            installer_user_id: DEMO_USER.into(),
            bot_scopes: vec![
                "channels:history".into(),
                "app_mentions:read".into(),
                "reactions:read".into(),
                "chat:write".into(),
            ],
            user_scopes: vec!["channels:history".into()],
            bot_token_hash: Some(token::hash(&bot_token)),
            user_token_hash: Some(token::hash(&user_token)),
        })
        .await
        .map_err(e)?;
    let mut members = vec![DEMO_USER.to_string()];
    members.extend(inst.bot_user_id.clone());
    s.store
        .put_conversation(Conversation {
            id: DEMO_CHANNEL.into(),
            team_id: DEMO_TEAM.into(),
            name: "general".into(),
            kind: ConversationKind::Public,
            members,
            created_at: 0,
        })
        .await
        .map_err(e)?;
    let app_token = token::generate(TokenKind::App, Some(DEMO_APP));
    s.store
        .create_app_token(NewAppToken {
            id: tidings_core::ids::generate(tidings_core::ids::IdKind::AppToken),
            app_id: DEMO_APP.into(),
            scopes: vec!["connections:write".into(), "authorizations:read".into()],
            token_hash: token::hash(&app_token),
        })
        .await
        .map_err(e)?;
    let creds = DevCredentials {
        team_id: DEMO_TEAM.into(),
        user_id: DEMO_USER.into(),
        channel_id: DEMO_CHANNEL.into(),
        app_id: DEMO_APP.into(),
        bot_user_id: inst.bot_user_id,
        bot_token,
        user_token,
        app_token,
        signing_secret: app.signing_secret,
    };
    let text = serde_json::to_string_pretty(&creds).map_err(|e| e.to_string())?;
    write_secret_file(&file, &text)?;
    Ok(Some(creds))
}
