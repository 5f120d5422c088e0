//! The OAuth scopes an app may ask for, and how the consent page says each in words.
//! A scope not listed here is refused at the authorize page (Slack's `invalid_scope`).

const WORDS: &[(&str, &str)] = &[
    (
        "app_mentions:read",
        "View messages that directly mention the app",
    ),
    ("bookmarks:read", "View bookmarks in conversations"),
    ("bookmarks:write", "Add, edit and remove bookmarks"),
    (
        "calls:read",
        "View information about ongoing and past calls",
    ),
    ("calls:write", "Start and manage calls"),
    (
        "channels:history",
        "View messages and other content in public channels",
    ),
    ("channels:join", "Join public channels"),
    (
        "channels:manage",
        "Manage public channels and create new ones",
    ),
    (
        "channels:read",
        "View basic information about public channels",
    ),
    ("chat:write", "Send messages"),
    (
        "chat:write.customize",
        "Send messages with a customized name and avatar",
    ),
    (
        "chat:write.public",
        "Send messages to channels the app is not a member of",
    ),
    ("commands", "Add shortcuts and slash commands"),
    ("dnd:read", "View Do Not Disturb settings"),
    ("dnd:write", "Edit Do Not Disturb settings"),
    ("emoji:read", "View custom emoji"),
    (
        "files:read",
        "View files shared in conversations the app is in",
    ),
    ("files:write", "Upload, edit and delete files"),
    (
        "groups:history",
        "View messages and other content in private channels",
    ),
    (
        "groups:read",
        "View basic information about private channels",
    ),
    (
        "groups:write",
        "Manage private channels and create new ones",
    ),
    ("identify", "View information about your identity"),
    (
        "im:history",
        "View messages and other content in direct messages",
    ),
    ("im:read", "View basic information about direct messages"),
    ("im:write", "Start direct messages with people"),
    ("links:read", "View URLs in messages"),
    ("links:write", "Show previews of URLs in messages"),
    (
        "mpim:history",
        "View messages and other content in group direct messages",
    ),
    (
        "mpim:read",
        "View basic information about group direct messages",
    ),
    ("mpim:write", "Start group direct messages with people"),
    ("pins:read", "View pinned content"),
    ("pins:write", "Add and remove pinned messages and files"),
    ("reactions:read", "View emoji reactions and their content"),
    ("reactions:write", "Add and edit emoji reactions"),
    ("reminders:read", "View reminders"),
    ("reminders:write", "Add, remove and complete reminders"),
    ("search:read", "Search the workspace's content"),
    ("stars:read", "View saved items"),
    ("stars:write", "Add and remove saved items"),
    (
        "team:read",
        "View the name, email domain and icon of the workspace",
    ),
    ("usergroups:read", "View user groups"),
    ("usergroups:write", "Create and manage user groups"),
    ("users.profile:read", "View profile details about people"),
    ("users:read", "View people in the workspace"),
    ("users:read.email", "View email addresses of people"),
    ("users:write", "Set presence"),
];

/// The words for a known scope; `None` for one this server does not grant.
pub fn describe(scope: &str) -> Option<&'static str> {
    WORDS.iter().find(|(s, _)| *s == scope).map(|(_, w)| *w)
}

/// A comma- (or space-) separated scope list, as both SDKs send it; `Err` names the first
/// unknown scope.
pub fn parse(list: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in list
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if describe(s).is_none() {
            return Err(s.to_string());
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_split_on_commas_and_refuse_unknown_scopes() {
        assert_eq!(
            parse("chat:write,commands,,chat:write").unwrap(),
            vec!["chat:write", "commands"]
        );
        assert_eq!(parse("chat:write,admin").unwrap_err(), "admin");
        assert!(parse("").unwrap().is_empty());
    }
}
