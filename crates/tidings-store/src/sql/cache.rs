//! The fan-out index: the directory as publish needs it, cached in memory and keyed for
//! its lookups (team → installations by app; app → subscriptions; conversation → kind and
//! members), so fan-out cost grows with the apps that match, not with all rows.
//!
//! Owned by the store and touched only from the writer thread (publish runs there, and so
//! does every write that changes what the index holds). It is a `std::sync::Mutex` only to
//! be shareable; it is never contended and never held across an `.await`. Every entry is
//! loaded lazily from the same connection the writer uses, and every write that changes
//! its source invalidates it in the same job — so the index always agrees with the
//! transaction that reads it. If a commit fails, the writer clears it entirely.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tidings_core::fanout::{AppSubscriptions, Grant};
pub use tidings_core::plan::{ConversationFacts, TeamGrants};
pub use tidings_core::policy::RateState;

use super::conn::Conn;
use super::rows;
use crate::model::ConversationKind;
use crate::params;
use crate::StoreResult;

#[derive(Default)]
pub struct FanoutIndex {
    /// team → enterprise (teams never change enterprise).
    teams: HashMap<String, Option<String>>,
    apps: HashMap<String, Arc<AppSubscriptions>>,
    /// team → active installations covering it, grouped by app (app order is stable).
    grants: HashMap<String, TeamGrants>,
    conversations: HashMap<(String, String), Option<Arc<ConversationFacts>>>,
    /// (app, team) → deliveries per minute in the rate window, and the last minute an
    /// `app_rate_limited` notice went out. Exact because only the writer counts.
    rates: HashMap<(String, String), RateState>,
}

/// Shared handle to the index.
#[derive(Clone, Default)]
pub struct Index(Arc<Mutex<FanoutIndex>>);

impl Index {
    pub fn lock(&self) -> MutexGuard<'_, FanoutIndex> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn clear(&self) {
        *self.lock() = FanoutIndex::default();
    }
}

/// The index's part in every batch ([`super::writer::CommitListener`]): on PostgreSQL,
/// another node may have changed the directory (drop the fan-out cache) or counted
/// deliveries against a rate limit (re-read the rate windows this batch touches); a batch
/// that rolls back may have left uncommitted state in it.
pub struct DirectoryWatch {
    index: Index,
    /// The directory version the index was last read at (written on the writer thread
    /// only; an atomic so the listener is `Sync`).
    seen: std::sync::atomic::AtomicI64,
}

impl DirectoryWatch {
    pub fn new(index: Index) -> DirectoryWatch {
        DirectoryWatch {
            index,
            seen: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }
}

impl super::writer::CommitListener for DirectoryWatch {
    fn before_batch(&self, c: &Conn) -> StoreResult<()> {
        if c.dialect() != super::conn::Dialect::Postgres {
            return Ok(());
        }
        let v = super::cluster::directory_version(c)?;
        if self.seen.swap(v, std::sync::atomic::Ordering::Relaxed) != v {
            self.index.clear();
        } else {
            self.index.lock().clear_rates();
        }
        Ok(())
    }

    fn rolled_back(&self) {
        self.index.clear();
    }
}

impl FanoutIndex {
    /// Forgets the rate windows (re-read from the database on next use): another node
    /// sharing the database may have counted deliveries against them.
    pub fn clear_rates(&mut self) {
        self.rates.clear();
    }

    pub fn invalidate_app(&mut self, id: &str) {
        self.apps.remove(id);
    }

    /// Installations changed: cheap enough to drop all teams (installs are rare).
    pub fn invalidate_grants(&mut self) {
        self.grants.clear();
    }

    pub fn invalidate_conversation(&mut self, team: &str, id: &str) {
        self.conversations
            .remove(&(team.to_string(), id.to_string()));
    }

    /// `Some(enterprise)` if the team exists.
    pub fn team(&mut self, c: &Conn, id: &str) -> StoreResult<Option<Option<String>>> {
        if let Some(e) = self.teams.get(id) {
            return Ok(Some(e.clone()));
        }
        let row: Option<Option<String>> = c.query_opt(
            "SELECT enterprise_id FROM teams WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        if let Some(e) = &row {
            self.teams.insert(id.to_string(), e.clone());
        }
        Ok(row)
    }

    pub fn app(&mut self, c: &Conn, id: &str) -> StoreResult<Option<Arc<AppSubscriptions>>> {
        if let Some(a) = self.apps.get(id) {
            return Ok(Some(a.clone()));
        }
        let app = c.query_opt(
            &format!("SELECT {} FROM apps WHERE id = ?1", rows::APP),
            params![id],
            rows::app,
        )?;
        Ok(app.map(|a| {
            let e = Arc::new(AppSubscriptions {
                id: a.id.clone(),
                bot_events: a.bot_events,
                user_events: a.user_events,
                events_enabled: a.events_enabled,
            });
            self.apps.insert(a.id, e.clone());
            e
        }))
    }

    /// Active installations covering `team` (team installs, and org-wide installs of its
    /// enterprise), grouped by app id in id order.
    pub fn grants(
        &mut self,
        c: &Conn,
        team: &str,
        enterprise: Option<&str>,
    ) -> StoreResult<TeamGrants> {
        if let Some(g) = self.grants.get(team) {
            return Ok(g.clone());
        }
        // Two indexed reads (the team's installs, its enterprise's org-wide ones), not
        // one OR that no index serves.
        let installations = c.query(
            &format!(
                "SELECT {0} FROM installations WHERE revoked_at IS NULL AND team_id = ?1
                 UNION ALL
                 SELECT {0} FROM installations WHERE revoked_at IS NULL AND team_id IS NULL
                   AND ?2 IS NOT NULL AND enterprise_id = ?2
                 ORDER BY app_id, id",
                rows::INSTALLATION
            ),
            params![team, enterprise],
            rows::installation,
        )?;
        let mut grouped: Vec<(String, Vec<Grant>)> = Vec::new();
        for i in installations {
            let app_id = i.app_id.clone();
            let g = rows::grant(i);
            match grouped.last_mut() {
                Some((app, list)) if *app == app_id => list.push(g),
                _ => grouped.push((app_id, vec![g])),
            }
        }
        let arc = Arc::new(grouped);
        self.grants.insert(team.to_string(), arc.clone());
        Ok(arc)
    }

    pub fn conversation(
        &mut self,
        c: &Conn,
        team: &str,
        id: &str,
    ) -> StoreResult<Option<Arc<ConversationFacts>>> {
        let key = (team.to_string(), id.to_string());
        if let Some(e) = self.conversations.get(&key) {
            return Ok(e.clone());
        }
        let kind: Option<String> = c.query_opt(
            "SELECT kind FROM conversations WHERE team_id = ?1 AND id = ?2",
            params![team, id],
            |r| r.get(0),
        )?;
        let entry = match kind.and_then(|k| ConversationKind::parse(&k)) {
            None => None,
            Some(kind) => {
                let members: HashSet<String> = c
                    .query(
                        "SELECT user_id FROM conversation_members WHERE team_id = ?1 AND conversation_id = ?2",
                        params![team, id],
                        |r| r.get::<String>(0),
                    )?
                    .into_iter()
                    .collect();
                Some(Arc::new(ConversationFacts {
                    channel_type: kind.channel_type(),
                    members,
                }))
            }
        };
        self.conversations.insert(key, entry.clone());
        Ok(entry)
    }

    /// The rate state of (app, team), rebuilt from stored deliveries on first use (and on
    /// every batch when nodes share the database): one range read of the pair's deliveries
    /// in the window, through the `(app_id, team_id, created_at)` index. That read also
    /// finds whether the `app_rate_limited` notice went out this minute: a notice's
    /// delivery is created the second it is queued. (It used to be looked up in `events`,
    /// which has no index for it: a scan of every event, per pair, per batch.)
    pub fn rate(
        &mut self,
        c: &Conn,
        app: &str,
        team: &str,
        now_secs: i64,
        window_secs: i64,
    ) -> StoreResult<&mut RateState> {
        let key = (app.to_string(), team.to_string());
        if !self.rates.contains_key(&key) {
            let mut state = RateState::default();
            let minutes = c.query(
                "SELECT created_at / 60,
                        SUM(CASE WHEN status <> 'dropped' AND event_type <> 'app_rate_limited' THEN 1 ELSE 0 END),
                        MAX(CASE WHEN event_type = 'app_rate_limited' THEN 1 ELSE 0 END)
                 FROM deliveries
                 WHERE app_id = ?1 AND team_id = ?2 AND created_at > ?3
                 GROUP BY created_at / 60",
                params![app, team, now_secs - window_secs.max(60)],
                |r| Ok((r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?)),
            )?;
            for (minute, n, notice) in minutes {
                state.window.add(minute, n as u64);
                if notice > 0 {
                    state.notified_minute = state.notified_minute.max(Some(minute));
                }
            }
            self.rates.insert(key.clone(), state);
        }
        Ok(self.rates.get_mut(&key).expect("inserted above"))
    }
}
