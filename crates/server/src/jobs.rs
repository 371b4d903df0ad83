//! Background jobs (large redrives) and their progress, kept in memory:
//! a job's progress is lost with the process, its effect is not (every
//! batch is committed as it goes).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

/// Finished jobs remembered for polling.
const KEEP_FINISHED: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    /// What the job does, e.g. `redrive`.
    pub kind: String,
    pub subscription: String,
    pub state: JobState,
    /// Deliveries matching when the job started.
    pub total: u64,
    /// Deliveries moved so far.
    pub done: u64,
    pub error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
}

#[derive(Clone, Default)]
pub struct Jobs {
    jobs: Arc<Mutex<VecDeque<Job>>>,
}

impl Jobs {
    pub fn start(&self, kind: &str, subscription: &str, total: u64, now: Timestamp) -> Job {
        let job = Job {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.into(),
            subscription: subscription.into(),
            state: JobState::Running,
            total,
            done: 0,
            error: None,
            created_at: now,
            finished_at: None,
        };
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.push_back(job.clone());
            // Forget the oldest finished jobs beyond the limit.
            while jobs.iter().filter(|j| j.state != JobState::Running).count() > KEEP_FINISHED {
                match jobs.iter().position(|j| j.state != JobState::Running) {
                    Some(index) => {
                        jobs.remove(index);
                    }
                    None => break,
                }
            }
        }
        job
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.jobs
            .lock()
            .ok()
            .and_then(|jobs| jobs.iter().find(|j| j.id == id).cloned())
    }

    pub fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        if let Ok(mut jobs) = self.jobs.lock()
            && let Some(job) = jobs.iter_mut().find(|j| j.id == id)
        {
            change(job);
        }
    }
}
