//! [`Store`] for [`SqlStore`]: each method sends its SQL function to the writer (writes)
//! or the read pool (reads).

use async_trait::async_trait;

use super::{
    apps, cluster, directory as dir, dispatch, events, insights, lifecycle, manifests, oauth,
    publish, rows, rtm, sessions, SqlStore,
};
use crate::model::*;
use crate::{params, Page, PageRequest, Store, StoreResult};

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        let ping = self.read(|c| c.query_one("SELECT 1", params![], |_| Ok(())));
        match self.limit {
            None => ping.await,
            // Bounded as a whole: waiting for a connection and the answer.
            Some(limit) => tokio::time::timeout(limit, ping).await.map_err(|_| {
                crate::StoreError::Unavailable(format!(
                    "the database did not answer within {} ms",
                    limit.as_millis()
                ))
            })?,
        }
    }

    async fn create_enterprise(&self, e: Enterprise) -> StoreResult<Enterprise> {
        self.write_directory(move |c| dir::create_enterprise(c, e))
            .await
    }

    async fn get_enterprise(&self, id: &str) -> StoreResult<Option<Enterprise>> {
        let id = id.to_owned();
        self.read(move |c| dir::get_enterprise(c, &id)).await
    }

    async fn list_enterprises(&self, page: &PageRequest) -> StoreResult<Page<Enterprise>> {
        let page = page.clone();
        self.read(move |c| {
            let sql = format!("SELECT {} FROM enterprises", rows::ENTERPRISE);
            dir::page(c, &sql, "id", &[], &page, rows::enterprise, |e| {
                e.id.clone()
            })
        })
        .await
    }

    async fn create_team(&self, t: Team) -> StoreResult<Team> {
        self.write_directory(move |c| dir::create_team(c, t)).await
    }

    async fn get_team(&self, id: &str) -> StoreResult<Option<Team>> {
        let id = id.to_owned();
        self.read(move |c| dir::get_team(c, &id)).await
    }

    async fn list_teams(&self, page: &PageRequest) -> StoreResult<Page<Team>> {
        let page = page.clone();
        self.read(move |c| {
            let sql = format!("SELECT {} FROM teams", rows::TEAM);
            dir::page(c, &sql, "id", &[], &page, rows::team, |t| t.id.clone())
        })
        .await
    }

    async fn create_user(&self, u: User) -> StoreResult<User> {
        self.write_directory(move |c| dir::create_user(c, u)).await
    }

    async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
        let id = id.to_owned();
        self.read(move |c| dir::get_user(c, &id)).await
    }

    async fn list_users(&self, team_id: &str, page: &PageRequest) -> StoreResult<Page<User>> {
        let (team_id, page) = (team_id.to_owned(), page.clone());
        self.read(move |c| {
            dir::require_team(c, &team_id)?;
            let sql = format!("SELECT {} FROM users WHERE team_id = ?1", rows::USER);
            dir::page(c, &sql, "id", params![team_id], &page, rows::user, |u| {
                u.id.clone()
            })
        })
        .await
    }

    async fn put_conversation(&self, conv: Conversation) -> StoreResult<(Conversation, bool)> {
        let idx = self.index.clone();
        self.write_directory(move |c| {
            idx.lock().invalidate_conversation(&conv.team_id, &conv.id);
            dir::put_conversation(c, conv)
        })
        .await
    }

    async fn get_conversation(&self, team_id: &str, id: &str) -> StoreResult<Option<Conversation>> {
        let (team_id, id) = (team_id.to_owned(), id.to_owned());
        self.read(move |c| {
            dir::require_team(c, &team_id)?;
            dir::get_conversation(c, &team_id, &id)
        })
        .await
    }

    async fn add_member(&self, team_id: &str, conv: &str, user: &str) -> StoreResult<Conversation> {
        let (t, cv, u) = (team_id.to_owned(), conv.to_owned(), user.to_owned());
        let idx = self.index.clone();
        self.write_directory(move |c| {
            idx.lock().invalidate_conversation(&t, &cv);
            dir::add_member(c, &t, &cv, &u)
        })
        .await
    }

    async fn remove_member(
        &self,
        team_id: &str,
        conv: &str,
        user: &str,
    ) -> StoreResult<Conversation> {
        let (t, cv, u) = (team_id.to_owned(), conv.to_owned(), user.to_owned());
        let idx = self.index.clone();
        self.write_directory(move |c| {
            idx.lock().invalidate_conversation(&t, &cv);
            dir::remove_member(c, &t, &cv, &u)
        })
        .await
    }

    async fn create_app(&self, app: App) -> StoreResult<App> {
        self.write_directory(move |c| apps::create_app(c, app))
            .await
    }

    async fn update_app(&self, id: &str, update: AppUpdate) -> StoreResult<App> {
        let (idx, cache, id) = (self.index.clone(), self.apps.clone(), id.to_owned());
        let work = self.work.clone();
        self.write_directory(move |c| {
            idx.lock().invalidate_app(&id);
            cache.changed(&id);
            let app = apps::update_app(c, &id, update)?;
            // Enabled, disabled, a URL verified, Socket Mode turned on or off: how the
            // app's pending deliveries go may have changed, so the engine looks again.
            work.wake([app.id.clone()]);
            Ok(app)
        })
        .await
    }

    async fn get_app(&self, id: &str) -> StoreResult<Option<App>> {
        let generation = match self.apps.get(id) {
            Ok(app) => return Ok(Some(app)),
            Err(generation) => generation,
        };
        let id = id.to_owned();
        let app = self.read(move |c| apps::get_app(c, &id)).await?;
        if let Some(a) = &app {
            self.apps.put(generation, a);
        }
        Ok(app)
    }

    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>> {
        let page = page.clone();
        self.read(move |c| {
            let sql = format!("SELECT {} FROM apps", rows::APP);
            dir::page(c, &sql, "id", &[], &page, rows::app, |a| a.id.clone())
        })
        .await
    }

    async fn create_app_token(&self, t: NewAppToken) -> StoreResult<AppToken> {
        self.write(move |c| apps::create_app_token(c, t)).await
    }

    async fn list_app_tokens(&self, app_id: &str) -> StoreResult<Vec<AppToken>> {
        let app_id = app_id.to_owned();
        self.read(move |c| apps::list_app_tokens(c, &app_id)).await
    }

    async fn revoke_app_token(&self, app_id: &str, token_id: &str) -> StoreResult<AppToken> {
        let (a, t) = (app_id.to_owned(), token_id.to_owned());
        self.write(move |c| {
            let token = apps::revoke_app_token(c, &a, &t)?;
            cluster::notify_revoked(c, &a, &t)?;
            Ok(token)
        })
        .await
    }

    async fn install(&self, i: NewInstallation) -> StoreResult<Installation> {
        let idx = self.index.clone();
        self.write_directory(move |c| {
            idx.lock().invalidate_grants();
            apps::install(c, i)
        })
        .await
    }

    async fn get_installation(&self, id: &str) -> StoreResult<Option<Installation>> {
        let id = id.to_owned();
        self.read(move |c| apps::get_installation(c, &id)).await
    }

    async fn list_installations(
        &self,
        app_id: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<Installation>> {
        let (app_id, page) = (app_id.to_owned(), page.clone());
        self.read(move |c| {
            if apps::get_app(c, &app_id)?.is_none() {
                return Err(crate::StoreError::NotFound(format!(
                    "app {app_id} does not exist"
                )));
            }
            let sql = format!(
                "SELECT {} FROM installations WHERE app_id = ?1",
                rows::INSTALLATION
            );
            dir::page(
                c,
                &sql,
                "id",
                params![app_id],
                &page,
                rows::installation,
                |i| i.id.clone(),
            )
        })
        .await
    }

    async fn uninstall(
        &self,
        app_id: &str,
        installation_id: &str,
        policy: &PublishPolicy,
    ) -> StoreResult<Installation> {
        let (a, i, policy) = (
            app_id.to_owned(),
            installation_id.to_owned(),
            policy.clone(),
        );
        let (idx, counter, work) = (self.index.clone(), self.counter.clone(), self.work.clone());
        self.write_directory(move |c| {
            let mut guard = idx.lock();
            let mut effects = lifecycle::Effects::new(work.room());
            let done = lifecycle::uninstall_events(c, &mut guard, &policy, &a, &i, &mut effects)
                .and_then(|()| {
                    guard.invalidate_grants();
                    apps::uninstall(c, &a, &i)
                });
            match done {
                // Only now, with the job's writes all made: a failed job rolls back its
                // savepoint and must leave no counts or hand-overs behind.
                Ok(inst) => {
                    counter.add(effects.tally);
                    work.wake(effects.apps);
                    work.hand_over(effects.fresh.rows);
                    Ok(inst)
                }
                Err(e) => {
                    // The savepoint rolls back; the index may have seen its writes.
                    *guard = Default::default();
                    Err(e)
                }
            }
        })
        .await
    }

    async fn create_config_token(
        &self,
        t: crate::manifests::NewConfigToken,
    ) -> StoreResult<crate::manifests::ConfigToken> {
        self.write(move |c| manifests::create_token(c, t, super::now()))
            .await
    }

    async fn config_token(
        &self,
        access_hash: &str,
    ) -> StoreResult<Option<crate::manifests::ConfigToken>> {
        let h = access_hash.to_owned();
        self.read(move |c| manifests::by_access(c, &h)).await
    }

    async fn rotate_config_token(
        &self,
        refresh_hash: &str,
        new: crate::manifests::NewConfigToken,
    ) -> StoreResult<Option<crate::manifests::ConfigToken>> {
        let h = refresh_hash.to_owned();
        self.write(move |c| manifests::rotate(c, &h, new, super::now()))
            .await
    }

    async fn app_owners(&self, app_id: &str) -> StoreResult<Vec<String>> {
        let a = app_id.to_owned();
        self.read(move |c| manifests::owners(c, &a)).await
    }

    async fn list_app_owners(&self) -> StoreResult<Vec<(String, String)>> {
        self.read(manifests::all_owners).await
    }

    async fn app_manifest(
        &self,
        app_id: &str,
    ) -> StoreResult<Option<crate::manifests::StoredManifest>> {
        let a = app_id.to_owned();
        self.read(move |c| manifests::get_manifest(c, &a)).await
    }

    async fn put_app_manifest(
        &self,
        app_id: &str,
        manifest: &str,
        owner: Option<&str>,
    ) -> StoreResult<()> {
        let (a, m, o) = (
            app_id.to_owned(),
            manifest.to_owned(),
            owner.map(str::to_owned),
        );
        self.write(move |c| manifests::put_manifest(c, &a, &m, o.as_deref(), super::now()))
            .await
    }

    async fn mark_app_deleted(&self, app_id: &str) -> StoreResult<()> {
        let a = app_id.to_owned();
        self.write(move |c| manifests::mark_deleted(c, &a, super::now()))
            .await
    }

    async fn oauth_client(&self, app_id: &str) -> StoreResult<Option<crate::oauth::OAuthClient>> {
        let a = app_id.to_owned();
        self.read(move |c| oauth::get_client(c, &a)).await
    }

    async fn oauth_client_by_id(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<crate::oauth::OAuthClient>> {
        let a = client_id.to_owned();
        self.read(move |c| oauth::client_by_id(c, &a)).await
    }

    async fn put_oauth_secret(
        &self,
        app_id: &str,
        client_id: &str,
        secret_hash: &str,
    ) -> StoreResult<crate::oauth::OAuthClient> {
        let (a, i, h) = (
            app_id.to_owned(),
            client_id.to_owned(),
            secret_hash.to_owned(),
        );
        self.write(move |c| oauth::put_secret(c, &a, &i, &h)).await
    }

    async fn update_oauth_client(
        &self,
        app_id: &str,
        update: crate::oauth::OAuthClientUpdate,
    ) -> StoreResult<crate::oauth::OAuthClient> {
        let a = app_id.to_owned();
        self.write(move |c| oauth::update_client(c, &a, update))
            .await
    }

    async fn put_oauth_grant(
        &self,
        code_hash: &str,
        grant: crate::oauth::OAuthGrant,
    ) -> StoreResult<()> {
        let h = code_hash.to_owned();
        self.write(move |c| oauth::put_grant(c, &h, &grant, super::now()))
            .await
    }

    async fn exchange_oauth_code(
        &self,
        x: crate::oauth::CodeExchange,
    ) -> StoreResult<Result<(Installation, crate::oauth::OAuthGrant), crate::oauth::OAuthRefusal>>
    {
        let idx = self.index.clone();
        self.write_directory(move |c| {
            idx.lock().invalidate_grants();
            oauth::exchange_code(c, x)
        })
        .await
    }

    async fn refresh_oauth_token(
        &self,
        x: crate::oauth::Refresh,
    ) -> StoreResult<Result<crate::oauth::Refreshed, crate::oauth::OAuthRefusal>> {
        let idx = self.index.clone();
        self.write(move |c| {
            idx.lock().invalidate_grants();
            oauth::refresh(c, x)
        })
        .await
    }

    async fn exchange_oauth_token(
        &self,
        old_hash: &str,
        app_id: &str,
        access: crate::oauth::IssuedToken,
    ) -> StoreResult<Option<crate::oauth::Refreshed>> {
        let (h, a) = (old_hash.to_owned(), app_id.to_owned());
        let idx = self.index.clone();
        self.write(move |c| {
            idx.lock().invalidate_grants();
            oauth::exchange_token(c, &h, &a, &access, super::now())
        })
        .await
    }

    async fn token_expires_at(&self, token_hash: &str) -> StoreResult<Option<i64>> {
        let h = token_hash.to_owned();
        self.read(move |c| oauth::token_expires_at(c, &h)).await
    }

    async fn revoke_installation_side(
        &self,
        app_id: &str,
        installation_id: &str,
        kind: &str,
        user_id: &str,
        policy: &PublishPolicy,
    ) -> StoreResult<i64> {
        let (a, i, k, u, policy) = (
            app_id.to_owned(),
            installation_id.to_owned(),
            kind.to_owned(),
            user_id.to_owned(),
            policy.clone(),
        );
        let (idx, counter, work) = (self.index.clone(), self.counter.clone(), self.work.clone());
        self.write_directory(move |c| {
            let mut guard = idx.lock();
            let mut effects = lifecycle::Effects::new(work.room());
            let done =
                lifecycle::revoke_side_events(c, &mut guard, &policy, &a, &i, &k, &u, &mut effects);
            guard.invalidate_grants();
            match done {
                // As in `uninstall`: effects only once the job's writes are all made.
                Ok(left) => {
                    counter.add(effects.tally);
                    work.wake(effects.apps);
                    work.hand_over(effects.fresh.rows);
                    Ok(left)
                }
                Err(e) => {
                    *guard = Default::default();
                    Err(e)
                }
            }
        })
        .await
    }

    async fn use_login_assertion(&self, id: &str, expires_at: i64) -> StoreResult<bool> {
        let i = id.to_owned();
        self.write(move |c| oauth::use_assertion(c, &i, expires_at, super::now()))
            .await
    }

    async fn create_operator_token(&self, t: NewOperatorToken) -> StoreResult<OperatorToken> {
        self.write(move |c| apps::create_operator_token(c, t)).await
    }

    async fn list_operator_tokens(&self) -> StoreResult<Vec<OperatorToken>> {
        self.read(apps::list_operator_tokens).await
    }

    async fn revoke_operator_token(&self, id: &str) -> StoreResult<OperatorToken> {
        let id = id.to_owned();
        self.write(move |c| apps::revoke_operator_token(c, &id))
            .await
    }

    async fn authenticate(&self, token_hash: &str) -> StoreResult<Option<TokenGrant>> {
        let h = token_hash.to_owned();
        self.read(move |c| apps::authenticate(c, &h)).await
    }

    async fn publish(
        &self,
        policy: &PublishPolicy,
        requests: Vec<PublishRequest>,
    ) -> StoreResult<Vec<Result<Published, PublishRefusal>>> {
        // One writer job per event, sent together so they share one group commit; a
        // failure inside one rolls back only its own savepoint.
        let jobs = requests.into_iter().map(|req| {
            let idx = self.index.clone();
            let counter = self.counter.clone();
            let work = self.work.clone();
            let policy = policy.clone();
            // Every refusal of an event that leaves the directory alone comes before its
            // first write, so it needs no savepoint of its own.
            let lean = req
                .event
                .get("type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|t| !tidings_core::publish::changes_directory(t));
            let work = move |c: &super::conn::Conn| {
                let mut guard = idx.lock();
                let mut tally = crate::insights::Tally::default();
                let mut fresh = publish::Fresh::with_room(work.room());
                let outcome =
                    publish::publish_one(c, &mut guard, &policy, req, &mut tally, &mut fresh);
                // Counted even when refused (too old); the counts are written with the batch.
                counter.add(tally);
                if outcome.is_err() {
                    // The savepoint rolls back; the index may have seen its writes.
                    *guard = Default::default();
                }
                match outcome? {
                    Ok(p) => {
                        work.wake(p.apps.iter().cloned());
                        work.hand_over(fresh.rows);
                        Ok(Ok(p))
                    }
                    // A refusal must leave nothing behind: fail the job so its savepoint
                    // rolls back, and carry the refusal out through the error.
                    Err(r) => Err(crate::StoreError::Refused(r)),
                }
            };
            (work, lean)
        });
        let results = self.writer.write_all(jobs.collect()).await;
        results
            .into_iter()
            .map(|r| match r {
                Ok(inner) => Ok(inner),
                Err(crate::StoreError::Refused(r)) => Ok(Err(r)),
                Err(e) => Err(e),
            })
            .collect()
    }

    async fn preview_publish(
        &self,
        policy: &PublishPolicy,
        request: PublishRequest,
    ) -> StoreResult<Result<Preview, PublishRefusal>> {
        let policy = policy.clone();
        let seen: std::sync::Arc<std::sync::Mutex<Option<Preview>>> = Default::default();
        let out = seen.clone();
        let work = move |c: &super::conn::Conn| {
            // A fresh index, so nothing the dry run does reaches the shared cache; a
            // throwaway tally and hand-over, so nothing is counted or dispatched.
            let mut idx = super::cache::FanoutIndex::default();
            let mut tally = crate::insights::Tally::default();
            let mut fresh = publish::Fresh::with_room(0);
            let p = match publish::publish_one(
                c, &mut idx, &policy, request, &mut tally, &mut fresh,
            )? {
                Ok(p) => p,
                Err(r) => return Err(crate::StoreError::Refused(r)),
            };
            let preview = match events::get_event(c, &p.event_id)? {
                Some(event) if p.duplicate => Preview {
                    event,
                    deliveries: Vec::new(),
                    duplicate_of: Some(p.event_id.clone()),
                },
                Some(event) => Preview {
                    event,
                    deliveries: events::event_deliveries(c, &p.event_id)?,
                    duplicate_of: None,
                },
                None => {
                    return Err(crate::StoreError::Internal(
                        "the previewed event vanished".into(),
                    ))
                }
            };
            if let Ok(mut slot) = seen.lock() {
                *slot = Some(preview);
            }
            // Always fail, so the savepoint rolls back whatever the dry run wrote.
            Err(crate::StoreError::Refused(PublishRefusal {
                status: 0,
                code: "dry_run",
                field: String::new(),
                message: "rolled back".into(),
            }))
        };
        let result: StoreResult<()> = self.write(work).await;
        let preview = out.lock().ok().and_then(|mut s| s.take());
        match (result, preview) {
            (_, Some(p)) => Ok(Ok(p)),
            (Err(crate::StoreError::Refused(r)), None) => Ok(Err(r)),
            (Err(e), None) => Err(e),
            (Ok(()), None) => Err(crate::StoreError::Internal(
                "the dry run kept nothing".into(),
            )),
        }
    }

    fn event_context_key(&self) -> Vec<u8> {
        self.context_key.as_ref().clone()
    }

    fn delivery_queue(&self) -> std::sync::Arc<dyn crate::DeliveryQueue> {
        std::sync::Arc::new(self.clone())
    }

    async fn get_event(&self, id: &str) -> StoreResult<Option<StoredEvent>> {
        let id = id.to_owned();
        self.read(move |c| events::get_event(c, &id)).await
    }

    async fn event_deliveries(&self, event_id: &str) -> StoreResult<Vec<Delivery>> {
        let id = event_id.to_owned();
        self.read(move |c| events::event_deliveries(c, &id)).await
    }

    async fn rtm_watermark(&self, app_id: &str) -> StoreResult<i64> {
        let app = app_id.to_owned();
        self.read(move |c| rtm::watermark(c, &app)).await
    }

    async fn rtm_events_after(
        &self,
        app_id: &str,
        scope: &RtmScope,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<RtmEvent>> {
        let (app, scope) = (app_id.to_owned(), scope.clone());
        self.read(move |c| rtm::events_after(c, &app, &scope, after_seq, limit))
            .await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<Delivery>> {
        let id = id.to_owned();
        self.read(move |c| events::get_delivery(c, &id)).await
    }

    async fn feed(&self, app_id: &str, q: &FeedQuery) -> StoreResult<Vec<(Delivery, StoredEvent)>> {
        let (app_id, q) = (app_id.to_owned(), q.clone());
        self.read(move |c| events::feed(c, &app_id, &q)).await
    }

    async fn list_deliveries(
        &self,
        app_id: &str,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Delivery>> {
        let (app_id, filter, page) = (app_id.to_owned(), filter.clone(), page.clone());
        self.read(move |c| events::list_deliveries(c, &app_id, &filter, &page))
            .await
    }

    async fn put_key_event(
        &self,
        event_type: &str,
    ) -> StoreResult<(crate::insights::KeyEvent, bool)> {
        let t = event_type.to_owned();
        self.write(move |c| insights::put_key_event(c, &t)).await
    }

    async fn delete_key_event(&self, event_type: &str) -> StoreResult<bool> {
        let t = event_type.to_owned();
        self.write(move |c| insights::delete_key_event(c, &t)).await
    }

    async fn list_key_events(&self) -> StoreResult<Vec<crate::insights::KeyEvent>> {
        self.read(insights::list_key_events).await
    }

    async fn event_insights(
        &self,
        range: &crate::insights::InsightRange,
    ) -> StoreResult<crate::insights::EventInsights> {
        let r = range.clone();
        self.read(move |c| insights::events(c, &r)).await
    }

    async fn delivery_insights(
        &self,
        range: &crate::insights::InsightRange,
    ) -> StoreResult<crate::insights::DeliveryInsights> {
        let r = range.clone();
        self.read(move |c| insights::deliveries(c, &r)).await
    }

    async fn event_audience(
        &self,
        catalog: &tidings_core::catalog::Catalog,
        event_id: &str,
        app_id: &str,
    ) -> StoreResult<Option<Vec<tidings_core::fanout::Authorization>>> {
        let (catalog, e, a) = (catalog.clone(), event_id.to_owned(), app_id.to_owned());
        self.read(move |c| events::audience(c, &catalog, &e, &a))
            .await
    }

    async fn close(&self) -> StoreResult<()> {
        self.flush_and_close().await
    }

    async fn wake_app(&self, app_id: &str) -> StoreResult<()> {
        let app = app_id.to_owned();
        let work = self.work.clone();
        self.write(move |c| {
            work.wake([app.clone()]);
            dispatch::wake_app(c, &app)
        })
        .await
    }

    async fn redeliver(&self, id: &str) -> StoreResult<Delivery> {
        let id = id.to_owned();
        let work = self.work.clone();
        self.write(move |c| {
            dispatch::redeliver(c, &id)?;
            let d = events::get_delivery(c, &id)?.ok_or_else(|| {
                crate::StoreError::NotFound(format!("delivery {id} does not exist"))
            })?;
            work.wake([d.app_id.clone()]);
            Ok(d)
        })
        .await
    }

    async fn redeliver_many(&self, app_id: &str, filter: &DeliveryFilter) -> StoreResult<usize> {
        let (app, f) = (app_id.to_owned(), filter.clone());
        let work = self.work.clone();
        self.write(move |c| {
            let n = dispatch::redeliver_many(c, &app, &f)?;
            if n > 0 {
                work.wake([app.clone()]);
            }
            Ok(n)
        })
        .await
    }

    async fn create_redelivery(
        &self,
        job: crate::redeliveries::NewRedelivery,
    ) -> StoreResult<crate::redeliveries::Redelivery> {
        self.write(move |c| super::redeliveries::create(c, &job))
            .await
    }

    async fn get_redelivery(
        &self,
        id: &str,
    ) -> StoreResult<Option<crate::redeliveries::Redelivery>> {
        let id = id.to_owned();
        self.read(move |c| super::redeliveries::get(c, &id)).await
    }

    async fn list_redeliveries(
        &self,
        app_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<crate::redeliveries::Redelivery>> {
        let app = app_id.to_owned();
        self.read(move |c| super::redeliveries::list(c, &app, limit))
            .await
    }

    async fn running_redeliveries(&self) -> StoreResult<Vec<String>> {
        self.read(super::redeliveries::running).await
    }

    async fn advance_redelivery(
        &self,
        id: &str,
        limit: usize,
    ) -> StoreResult<Option<crate::redeliveries::Redelivery>> {
        let id = id.to_owned();
        let work = self.work.clone();
        self.write(move |c| {
            let r = super::redeliveries::advance(c, &id, limit)?;
            // The engine learns of the re-queued deliveries when this commits.
            if let Some((job, n)) = &r {
                if *n > 0 {
                    work.wake([job.app_id.clone()]);
                }
            }
            Ok(r.map(|(job, _)| job))
        })
        .await
    }

    async fn attempt_tallies(&self, since_ms: i64) -> StoreResult<Vec<AttemptTally>> {
        self.read(move |c| dispatch::tallies(c, since_ms)).await
    }

    async fn prune(&self, retention: crate::Retention, now: i64) -> StoreResult<crate::Pruned> {
        super::retention::prune(self, retention, now).await
    }

    async fn vacuum_pruned(&self, pruned: crate::Pruned) -> StoreResult<Vec<&'static str>> {
        super::retention::vacuum(self, pruned).await
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        self.read(dispatch::pending_count).await
    }

    fn node_id(&self) -> String {
        self.node_id.to_string()
    }

    fn is_shared(&self) -> bool {
        self.lease_ms > 0
    }

    async fn heartbeat(&self, public_url: &str) -> StoreResult<()> {
        let (node, url) = (self.node_id.clone(), public_url.to_owned());
        self.write(move |c| cluster::heartbeat(c, &node, &url, super::now()))
            .await
    }

    async fn socket_opened(
        &self,
        connection_id: &str,
        app_id: &str,
        app_token_id: &str,
    ) -> StoreResult<()> {
        let (node, conn, app, token) = (
            self.node_id.clone(),
            connection_id.to_owned(),
            app_id.to_owned(),
            app_token_id.to_owned(),
        );
        self.write(move |c| {
            let s = cluster::OpenSocket {
                node: &node,
                connection: &conn,
                app: &app,
                app_token: &token,
            };
            cluster::socket_opened(c, s, super::now())
        })
        .await
    }

    async fn socket_closed(&self, connection_id: &str) -> StoreResult<()> {
        let (node, conn) = (self.node_id.clone(), connection_id.to_owned());
        self.write(move |c| cluster::socket_closed(c, &node, &conn))
            .await
    }

    async fn remote_socket_connections(&self, app_id: &str) -> StoreResult<usize> {
        let (node, app) = (self.node_id.clone(), app_id.to_owned());
        self.read(move |c| cluster::remote_sockets(c, &node, &app, super::now()))
            .await
    }

    async fn remote_token_sockets(&self, app_token_id: &str) -> StoreResult<usize> {
        let (node, token) = (self.node_id.clone(), app_token_id.to_owned());
        self.read(move |c| cluster::remote_token_sockets(c, &node, &token, super::now()))
            .await
    }

    fn take_revocations(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<cluster::Revocation>> {
        self.revocations.lock().ok().and_then(|mut r| r.take())
    }

    async fn revoked_app_tokens(&self, since: i64) -> StoreResult<Vec<(String, String)>> {
        self.read(move |c| cluster::revoked_app_tokens(c, since))
            .await
    }

    async fn end_session(&self, id: &str, expires_at: i64) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| sessions::end(c, &id, expires_at, super::now()))
            .await
    }

    async fn session_ended(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.read(move |c| sessions::ended(c, &id)).await
    }
}
