//! Makes the running services equal a validated `Config`: at start, on reload, and for every
//! live change that is a config edit.

use super::{Balancer, LiveError, plan::plan, publish};
use crate::config::Config;

impl Balancer {
    /// Services missing from `desired` are removed (SERVICES entry first, then their backends'
    /// UP flags), changed ones are updated in place with one switch each, new ones are added
    /// (SERVICES entry last). Unchanged services are not written at all. Returns one line per
    /// change (empty: nothing to do). A refusal leaves every map and the running state as they
    /// were.
    pub fn reconcile(&mut self, desired: &Config) -> Result<Vec<String>, LiveError> {
        let running = self.dp.session_capacity();
        if desired.sessions.capacity != running {
            // SESSIONS is sized when the program loads; a larger or smaller one is another
            // program, and its records would be lost.
            return Err(LiveError::Refused(format!(
                "[sessions] capacity {} differs from the running table's {running}: the session \
                 table is sized when lb starts; restart lb to resize it (the recorded sessions are \
                 lost then), or set capacity = {running} to keep it",
                desired.sessions.capacity
            )));
        }
        let plan = plan(&self.services, desired, &self.ids, self.initial)?;
        // Only map writes can fail from here on (a kernel problem, not bad input). The pools
        // are committed first so that no id is ever handed out twice, whatever happens next.
        self.ids = plan.ids;
        for old in &plan.removed {
            publish::withdraw(&mut self.dp, old)?;
            self.services.retain(|s| s.config.name != old.config.name);
        }
        for mut next in plan.changed {
            let Some(i) = self.services.iter().position(|s| s.config.name == next.config.name) else {
                unreachable!("planned from the running services");
            };
            publish::publish(&mut self.dp, Some(&self.services[i]), &mut next)?;
            self.services[i] = next;
        }
        for mut next in plan.added {
            publish::publish(&mut self.dp, None, &mut next)?;
            self.services.push(next);
        }
        self.services.sort_by_key(|s| plan.order.iter().position(|n| *n == s.config.name));
        Ok(plan.summary)
    }
}
