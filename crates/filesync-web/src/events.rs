//! `GET /api/events`: server-sent events that keep the pages live without reloading — a
//! `status` event (the dashboard's whole view) whenever the agent's status changes, at most
//! four times a second and at least every five seconds, and an `activity` event per new log
//! entry.

use crate::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const MIN_GAP: Duration = Duration::from_millis(250);
const REFRESH: Duration = Duration::from_secs(5);

struct Follow {
    app: AppState,
    status: tokio::sync::watch::Receiver<Option<filesync_agent::status::AgentStatus>>,
    activity: tokio::sync::broadcast::Receiver<filesync_agent::live::Activity>,
    first: bool,
    last_sent: tokio::time::Instant,
}

fn status_event(app: &AppState) -> Event {
    Event::default().event("status").json_data(app.status_view()).expect("status view serializes")
}

pub async fn events(State(app): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let follow = Follow {
        status: app.live.subscribe(),
        activity: app.live.subscribe_activity(),
        app,
        first: true,
        last_sent: tokio::time::Instant::now(),
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        if f.first {
            f.first = false;
            f.status.mark_unchanged();
            f.last_sent = tokio::time::Instant::now();
            let ev = status_event(&f.app);
            return Some((Ok(ev), f));
        }
        let refresh = tokio::time::sleep_until(f.last_sent + REFRESH);
        let activity = tokio::select! {
            r = f.status.changed() => {
                if r.is_err() {
                    return None;
                }
                // Let a burst of updates settle into one event.
                tokio::time::sleep_until(f.last_sent + MIN_GAP).await;
                f.status.mark_unchanged();
                None
            }
            a = f.activity.recv() => match a {
                Ok(mut a) => {
                    a.message = filesync_agent::ops::plain::for_ui(&a.message);
                    Some(Event::default().event("activity").json_data(a).expect("activity serializes"))
                }
                Err(RecvError::Lagged(_)) => Some(Event::default().event("activity-lagged").data("reload the log")),
                Err(RecvError::Closed) => return None,
            },
            _ = refresh => None,
        };
        let ev = match activity {
            Some(ev) => ev,
            None => {
                f.last_sent = tokio::time::Instant::now();
                status_event(&f.app)
            }
        };
        Some((Ok(ev), f))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
