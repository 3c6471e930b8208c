//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Only the holder of the Lease reconciles; the others wait and take over when the holder stops renewing.
//! The rules are client-go's (and so controller-runtime's, which Flux uses):
//!
//! - a candidate acquires the Lease when it does not exist, has no holder, or its holder has not renewed it for
//!   `leaseDurationSeconds` (falling back to `--leader-election-lease-duration`);
//! - the leader renews it every `--leader-election-retry-period`;
//! - a leader that cannot renew for `--leader-election-renew-deadline` stops leading;
//! - with `--leader-election-release-on-cancel`, a leader releases the Lease on shutdown by clearing
//!   `holderIdentity`, so the next candidate takes over without waiting for the lease to expire.
//!
//! Writes use the Lease's `resourceVersion`, so two candidates racing for the same Lease cannot both win.
//! Expiry is judged from the Lease's `renewTime`, so candidates' clocks must roughly agree (as they do on one
//! cluster); the lease duration dwarfs normal skew.
//!
//! ```no_run
//! # async fn run(client: kube::Client, args: common::cli::RuntimeArgs) -> Result<(), common::leader::LeaderError> {
//! use common::leader::{LeaderElector, default_identity};
//!
//! let elector = LeaderElector::new(
//!     client,
//!     "flux-system",
//!     "source-controller-leader-election",
//!     default_identity(),
//!     args.leader_election_timings(),
//! )
//! .release_on_cancel(args.leader_election_release_on_cancel);
//! let handle = elector.spawn();
//! let mut is_leader = handle.is_leader();
//! is_leader.wait_for(|leading| *leading).await.ok();
//! // ... run the controllers; stop (exit) when `is_leader` turns false ...
//! handle.release().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The leader election timings, from the `--leader-election-*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a Lease stays valid after its last renewal (`--leader-election-lease-duration`, 35s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading (`--leader-election-renew-deadline`, 30s).
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews (`--leader-election-retry-period`, 5s).
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(35),
            renew_deadline: Duration::from_secs(30),
            retry_period: Duration::from_secs(5),
        }
    }
}

/// Leader election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server refused or failed a Lease request.
    #[error("lease {name}: {source}")]
    Kube {
        /// The Lease name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The election task ended abnormally.
    #[error("leader election task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What a candidate should do with the Lease, given what it last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Create the Lease: it does not exist.
    Create,
    /// Take the Lease over: it has no holder, or its holder let it expire.
    Acquire,
    /// Renew the Lease: this candidate holds it.
    Renew,
    /// Leave the Lease alone: another holder's lease is still valid.
    Wait {
        /// The current holder.
        holder: String,
        /// When the holder's lease expires unless renewed.
        expires: Timestamp,
    },
}

/// Decides what `identity` should do with the Lease whose spec is `lease` (`None` when it does not exist) at
/// `now`. `default_duration` applies when the Lease has no usable `leaseDurationSeconds`.
pub fn decide(
    lease: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = match spec.holder_identity.as_deref() {
        None | Some("") => return Decision::Acquire,
        Some(holder) => holder,
    };
    if holder == identity {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|secs| *secs > 0)
        .map(|secs| SignedDuration::from_secs(i64::from(secs)))
        .or_else(|| SignedDuration::try_from(default_duration).ok())
        .unwrap_or(SignedDuration::ZERO);
    // A holder that never wrote a renew (or acquire) time has not shown it is alive.
    let Some(last) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Decision::Acquire;
    };
    let expires = last.0.saturating_add(duration).unwrap_or(Timestamp::MAX);
    if expires <= now {
        Decision::Acquire
    } else {
        Decision::Wait {
            holder: holder.to_owned(),
            expires,
        }
    }
}

/// The spec `identity` writes to take over (or create) a Lease whose current spec is `previous`.
pub fn acquired_spec(
    previous: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    timings: &LeaseTimings,
) -> LeaseSpec {
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    let changed_holder = previous
        .and_then(|p| p.holder_identity.as_deref())
        .is_some_and(|h| !h.is_empty() && h != identity);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(duration_secs(timings.lease_duration)),
        lease_transitions: Some(if changed_holder {
            transitions.saturating_add(1)
        } else {
            transitions
        }),
        ..previous.cloned().unwrap_or_default()
    }
}

/// The spec that releases a Lease held by this candidate: no holder, and a one-second duration so that a
/// candidate reading a stale copy also sees it expire at once.
pub fn released_spec(previous: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..previous.clone()
    }
}

fn duration_secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// An identity unique to this process: the host (pod) name, `_`, and a random suffix, like controller-runtime.
pub fn default_identity() -> String {
    let suffix: u64 = rand::rng().random();
    format!("{}_{suffix:016x}", crate::events::hostname())
}

/// An "is leader" receiver that is always `true`, for `--enable-leader-election=false`: the runner can then treat
/// both cases alike.
pub fn always_leader() -> watch::Receiver<bool> {
    watch::channel(true).1
}

/// Runs leader election for one Lease; see the module documentation.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: LeaseTimings,
    release_on_cancel: bool,
}

impl LeaderElector {
    /// An elector for the Lease `namespace`/`name`, competing as `identity`. Releases on shutdown by default.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: String,
        timings: LeaseTimings,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            timings,
            release_on_cancel: true,
        }
    }

    /// Whether [`LeaderHandle::release`] clears the Lease (`--leader-election-release-on-cancel`).
    pub fn release_on_cancel(mut self, release: bool) -> Self {
        self.release_on_cancel = release;
        self
    }

    /// The identity this elector competes as.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Starts the election loop on the current tokio runtime.
    pub fn spawn(self) -> LeaderHandle {
        let (leader_tx, leader_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(self.run(leader_tx, stop_rx));
        LeaderHandle {
            is_leader: leader_rx,
            stop: stop_tx,
            task,
        }
    }

    async fn run(
        self,
        leader: watch::Sender<bool>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), LeaderError> {
        let mut last_renew: Option<Instant> = None;
        loop {
            let leading = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renew = Some(Instant::now());
                    true
                }
                Ok(false) => {
                    last_renew = None;
                    false
                }
                Err(error) => {
                    let within_deadline =
                        last_renew.is_some_and(|t| t.elapsed() < self.timings.renew_deadline);
                    tracing::warn!(lease = %self.name, %error, within_deadline, "failed to acquire or renew lease");
                    if !within_deadline {
                        last_renew = None;
                    }
                    within_deadline
                }
            };
            leader.send_if_modified(|current| {
                let changed = *current != leading;
                if changed {
                    tracing::info!(lease = %self.name, identity = %self.identity, leading, "leadership changed");
                }
                *current = leading;
                changed
            });

            tokio::select! {
                _ = tokio::time::sleep(self.timings.retry_period) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }

        let was_leading = *leader.borrow();
        leader.send_replace(false);
        if was_leading && self.release_on_cancel {
            self.release().await?;
        }
        Ok(())
    }

    /// One round: read the Lease and create, acquire or renew it. Returns whether this candidate leads.
    async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        match decide(
            spec.as_ref(),
            &self.identity,
            now,
            self.timings.lease_duration,
        ) {
            Decision::Wait { .. } => Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(acquired_spec(None, &self.identity, now, &self.timings)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(true)
            }
            Decision::Acquire | Decision::Renew => {
                let Some(mut lease) = current else {
                    return Ok(false);
                };
                let new_spec = if spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                    == Some(self.identity.as_str())
                {
                    LeaseSpec {
                        renew_time: Some(MicroTime(now)),
                        lease_duration_seconds: Some(duration_secs(self.timings.lease_duration)),
                        ..spec.unwrap_or_default()
                    }
                } else {
                    acquired_spec(spec.as_ref(), &self.identity, now, &self.timings)
                };
                lease.spec = Some(new_spec);
                // `replace` sends the resourceVersion we read: a concurrent writer makes this fail.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(true)
            }
        }
    }

    async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released_spec(&spec, Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.err(e))?;
        tracing::info!(lease = %self.name, identity = %self.identity, "released lease");
        Ok(())
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Kube {
            name: self.name.clone(),
            source,
        }
    }
}

/// A running election, from [`LeaderElector::spawn`].
pub struct LeaderHandle {
    is_leader: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), LeaderError>>,
}

impl LeaderHandle {
    /// `true` while this process holds the Lease. When it turns `false` after having been `true`, leadership was
    /// lost: like controller-runtime, the controller should stop reconciling and exit. (The elector itself keeps
    /// competing, and turns `true` again if it regains the Lease.)
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Stops the election and, if leading and release-on-cancel is set, releases the Lease.
    pub async fn release(self) -> Result<(), LeaderError> {
        self.stop.send_replace(true);
        self.task.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn held_by(holder: &str, renewed_at: i64, duration_secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            acquire_time: Some(MicroTime(ts(0))),
            renew_time: Some(MicroTime(ts(renewed_at))),
            lease_duration_seconds: Some(duration_secs),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    const DEFAULT: Duration = Duration::from_secs(35);

    #[test]
    fn missing_lease_is_created() {
        assert_eq!(decide(None, "me", ts(0), DEFAULT), Decision::Create);
    }

    #[test]
    fn free_lease_is_acquired() {
        let mut spec = held_by("", 0, 35);
        assert_eq!(decide(Some(&spec), "me", ts(1), DEFAULT), Decision::Acquire);
        spec.holder_identity = None;
        assert_eq!(decide(Some(&spec), "me", ts(1), DEFAULT), Decision::Acquire);
    }

    #[test]
    fn own_lease_is_renewed_even_when_expired() {
        let spec = held_by("me", 0, 35);
        assert_eq!(decide(Some(&spec), "me", ts(1), DEFAULT), Decision::Renew);
        assert_eq!(decide(Some(&spec), "me", ts(100), DEFAULT), Decision::Renew);
    }

    #[test]
    fn valid_foreign_lease_is_waited_on_until_it_expires() {
        let spec = held_by("other", 10, 35);
        assert_eq!(
            decide(Some(&spec), "me", ts(44), DEFAULT),
            Decision::Wait {
                holder: "other".into(),
                expires: ts(45)
            }
        );
        assert_eq!(
            decide(Some(&spec), "me", ts(45), DEFAULT),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&spec), "me", ts(1000), DEFAULT),
            Decision::Acquire
        );
    }

    #[test]
    fn lease_duration_falls_back_to_the_flag() {
        let mut spec = held_by("other", 10, 0);
        spec.lease_duration_seconds = None;
        assert!(matches!(
            decide(Some(&spec), "me", ts(40), Duration::from_secs(35)),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(Some(&spec), "me", ts(40), Duration::from_secs(5)),
            Decision::Acquire
        );
    }

    #[test]
    fn holder_without_times_is_taken_over() {
        let spec = LeaseSpec {
            holder_identity: Some("other".into()),
            ..LeaseSpec::default()
        };
        assert_eq!(decide(Some(&spec), "me", ts(0), DEFAULT), Decision::Acquire);
    }

    #[test]
    fn acquiring_from_another_holder_counts_a_transition() {
        let timings = LeaseTimings::default();
        let previous = held_by("other", 0, 15);
        let spec = acquired_spec(Some(&previous), "me", ts(50), &timings);
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.lease_duration_seconds, Some(35));
        assert_eq!(spec.acquire_time, Some(MicroTime(ts(50))));
        assert_eq!(spec.renew_time, Some(MicroTime(ts(50))));

        let fresh = acquired_spec(None, "me", ts(0), &timings);
        assert_eq!(fresh.lease_transitions, Some(0));
        let released = released_spec(&spec, ts(60));
        let retaken = acquired_spec(Some(&released), "me", ts(61), &timings);
        assert_eq!(
            retaken.lease_transitions,
            Some(4),
            "a free lease is not a transition"
        );
    }

    #[test]
    fn released_lease_is_free_for_others() {
        let spec = held_by("me", 0, 35);
        let released = released_spec(&spec, ts(5));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(3));
        assert_eq!(
            decide(Some(&released), "other", ts(5), DEFAULT),
            Decision::Acquire
        );
    }

    #[test]
    fn always_leader_is_true() {
        assert!(*always_leader().borrow());
    }

    #[test]
    fn identities_are_unique() {
        assert_ne!(default_identity(), default_identity());
    }
}
