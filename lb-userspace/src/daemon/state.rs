//! What `lb run` holds while it runs, and the reactions that keep the maps in step with health
//! checks, drains and the config file.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::{
    control_orders::ControlReply,
    RunArgs,
    accounts::Accounts,
    checkers::Checkers,
    saved::SavedState,
    ops::{DrainReply, ShuntReply},
    preflight,
    rates::RateMeter,
    sessions::{SessionCensus, Walked},
    shunting::{Shunting, unix_now},
};
use crate::{
    balancer::{Balancer, LiveError},
    config::Config,
    dataplane::DataplaneError,
    health::{Health, HealthEvent, StatusTable},
};

/// How often counters are sampled for rates, sessions counted, drain timeouts checked.
pub(super) const TICK: Duration = Duration::from_secs(1);

pub(super) struct Daemon {
    pub balancer: Balancer,
    pub args: RunArgs,
    pub events: UnboundedReceiver<HealthEvent>,
    pub health: StatusTable,
    pub rates: RateMeter,
    /// Active sessions per backend, as of the last walk of SESSIONS (off the loop).
    pub sessions: SessionCensus,
    /// Drains whose answer waits for a count of the sessions left after them.
    pub drain_replies: Vec<DrainReply>,
    /// Overflow pools, load alerts, contribution accounts.
    pub shunting: Shunting,
    /// Shunt commands whose answer waits for the tick that acts on them.
    pub shunt_replies: Vec<ShuntReply>,
    /// Control orders (`--control-listen`) whose answer waits for the tick that acts on them.
    pub control_replies: Vec<ControlReply>,
    /// When this lb started, Unix seconds (`lb status`).
    pub started_at: crate::policy::UnixSecs,
    /// The drains, running services, checkers' history and shunting as saved in the state
    /// directory (for the next lb).
    saved: SavedState,
    checkers: Checkers,
}

impl Daemon {
    /// Starts a health checker for every backend. Adopting, the checkers go on from the history
    /// an earlier lb saved and the shunting state it saved is taken up (before the first tick: a
    /// pool open stays open).
    pub async fn start(
        balancer: Balancer,
        args: RunArgs,
        accounts: Accounts,
        mut saved: SavedState,
    ) -> Result<Daemon, DataplaneError> {
        let (events_tx, events) = unbounded_channel();
        let health = StatusTable::default();
        let sessions = SessionCensus::of(balancer.dataplane().session_reader());
        let started_at = unix_now();
        let mut shunting = Shunting::new(&balancer.running_config(), accounts, started_at);
        let shunt = saved.shunt.take_loaded();
        if balancer.dataplane().adopted() {
            for l in shunting.restore(shunt) {
                tracing::info!("{l}");
            }
        } else if !shunt.is_empty() {
            tracing::info!(
                services = shunt.len(),
                "first start: the saved shunting state is not used (the maps start empty: every overflow pool starts closed) and is replaced"
            );
        }
        let mut checkers = Checkers::new(events_tx, health.clone());
        // Adopting, the checkers go on from the history saved at exit where the maps agree.
        let (histories, lines) = saved.health.restore(&balancer, balancer.dataplane().adopted());
        lines.iter().for_each(|l| tracing::info!("{l}"));
        checkers.resume_from(histories);
        let mut daemon = Daemon {
            balancer,
            args,
            events,
            checkers,
            health,
            rates: RateMeter::default(),
            sessions,
            drain_replies: Vec::new(),
            shunting,
            shunt_replies: Vec::new(),
            control_replies: Vec::new(),
            started_at,
            saved,
        };
        // What this start applied is the running state now (a first start replaces the saved one).
        daemon.saved.running.save_if_changed(&daemon.balancer);
        daemon.sync_checkers().await?;
        Ok(daemon)
    }

    pub fn on_health(&mut self, ev: HealthEvent) -> Result<(), DataplaneError> {
        let up = ev.health == Health::Up;
        // How long the event waited for the loop (`cargo xtask bench` reads it).
        let queued_us = ev.sent.elapsed().as_micros() as u64;
        if self.balancer.set_health(&ev.service, ev.backend, up)? {
            tracing::info!(service = %ev.service, backend = %ev.backend,
                state = if up { "up" } else { "down" }, check = ev.check, detail = %ev.detail, queued_us, "backend health changed");
        }
        Ok(())
    }

    /// After a change: one checker per backend again.
    pub async fn sync_checkers(&mut self) -> Result<(), DataplaneError> {
        if self.checkers.stop_stale(&self.balancer).await > 0 {
            // Their last events may still be queued: apply them now, so that a restarted
            // checker starts from the health the balancer holds.
            while let Ok(ev) = self.events.try_recv() {
                self.on_health(ev)?;
            }
        }
        self.checkers.start_missing(&self.balancer);
        Ok(())
    }

    /// Logs and follows up a change of the running services: its lines, then the saved
    /// running services, the checkers and shunting.
    pub async fn changed(&mut self, lines: &[String]) -> Result<(), DataplaneError> {
        for l in lines {
            tracing::info!("{l}");
        }
        self.saved.running.save_if_changed(&self.balancer);
        self.shunting.reconfigure(&self.balancer.running_config(), unix_now());
        self.sync_checkers().await
    }

    /// Samples rates, runs the shunting policy on them (and answers the shunt commands it
    /// acted on), starts a walk of SESSIONS when one is due, and removes drained backends that
    /// are down or whose drain timed out; saves the drains in progress if they changed.
    pub async fn tick(&mut self) -> Result<(), LiveError> {
        let now = Instant::now();
        self.rates.sample(&self.balancer, now);
        let shunted = self.shunting.tick(unix_now(), &mut self.balancer, &self.rates, &self.sessions, &self.health);
        self.answer_shunt_commands();
        self.answer_control_orders();
        shunted?;
        self.sessions.start_if_due(now);
        let lines = self.balancer.finish_drains(now, None)?;
        if !lines.is_empty() {
            self.changed(&lines).await?;
        }
        self.saved.drains.save_if_changed(&self.balancer);
        self.saved.shunt.save_if_changed(&self.shunting);
        // Normally saved by `changed` already; this retries a write that failed.
        self.saved.running.save_if_changed(&self.balancer);
        let health = self.health.lock().map(|t| t.clone()).unwrap_or_default();
        self.saved.health.save_if_changed(&health, &self.balancer);
        Ok(())
    }

    /// A walk of SESSIONS ended: answers the drains waiting for it and removes drained
    /// backends that no session uses any more (counted by a walk that started after their
    /// drain began).
    pub async fn on_census(&mut self, walked: Walked) -> Result<(), LiveError> {
        let started = self.sessions.finished(walked);
        self.answer_drains(started);
        let counts = Some((self.sessions.counts(), started));
        let lines = self.balancer.finish_drains(Instant::now(), counts)?;
        if !lines.is_empty() {
            self.changed(&lines).await?;
        }
        Ok(())
    }

    /// Re-reads the config file and makes the running state equal it. An invalid file (or
    /// one this host cannot serve) changes nothing.
    pub async fn reload(&mut self) -> anyhow::Result<Vec<String>> {
        const REFUSED: &str = "reload refused, nothing changed";
        let (config, digest) = Config::load_with_digest(&self.args.config).context(REFUSED)?;
        preflight::check(&self.args.interfaces, &config).context(REFUSED)?;
        let lines = self.balancer.reconcile(&config).map_err(|e| match e {
            LiveError::Dataplane(_) => anyhow::Error::new(e),
            refused => anyhow::Error::new(refused).context(REFUSED),
        })?;
        // The running services are this file's now, live changes undone.
        self.saved.running.rebase(config, digest);
        self.changed(&lines).await?;
        Ok(lines)
    }

    /// Stops the checkers and saves the accounts, the drains in progress, the running
    /// services, the checkers' history and the shunting state. The data plane goes on
    /// forwarding with the last tables (its links and maps are pinned) for the next `lb run` to
    /// adopt, unless
    /// `--detach-on-exit` asked to detach and unpin.
    pub async fn shutdown(&mut self) {
        let health = self.checkers.stop_all().await;
        self.saved.health.save_if_changed(&health, &self.balancer);
        self.shunting.accounts.save_now().await;
        self.saved.drains.save_if_changed(&self.balancer);
        self.saved.shunt.save_if_changed(&self.shunting);
        self.saved.running.save_if_changed(&self.balancer);
        if self.args.detach_on_exit {
            self.balancer.dataplane_mut().detach_and_unpin();
            // As `lb detach`: the instance's state files go too (not the shared accounts).
            match super::remove_instance_files(&self.args.state_dir, &self.args.instance.to_string()) {
                Ok(removed) => removed.iter().for_each(|p| tracing::info!(path = %p.display(), "removed")),
                Err(e) => tracing::error!("removing the instance's state in {}: {e}", self.args.state_dir.display()),
            }
            tracing::info!("detached; exiting");
        } else {
            tracing::info!(
                instance = %self.args.instance,
                "exiting; the data plane keeps forwarding with the last tables (`lb run` adopts it, `lb detach` removes it)"
            );
        }
    }
}
