//! The scheduling rules, pure: whether a proposed session may be booked, and whether a booked
//! one may start now. The API gathers the facts from the database (the edge, the sessions that
//! overlap) and these functions decide, so every rule is tested without a database.

use serde::Serialize;

/// Longest session, in milliseconds: a school day.
pub const SESSION_LENGTH_MAX_MS: i64 = 12 * 3600 * 1000;

/// How early a teacher may start a class before its scheduled start, by default.
pub const EARLY_START_MARGIN_MS: i64 = 15 * 60 * 1000;

/// Participants one session may be booked for, at most (an edge's own limit may be lower).
pub const SESSION_CAPACITY_MAX: i64 = 1_000;

/// An edge as scheduling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeFacts {
    pub id: String,
    pub status: String,
    pub capacity: i64,
    /// Whether it says it can record a class (it reports this when it checks in).
    pub records: bool,
}

/// A session already booked that overlaps the proposed one in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booked {
    pub id: String,
    pub title: String,
    pub teacher_id: String,
    pub room: Option<String>,
}

/// What a session would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub starts_at: i64,
    pub ends_at: i64,
    pub teacher_id: String,
    pub room: Option<String>,
    pub capacity: i64,
    /// Its recording policy is `required`: it may not start without a recorder.
    pub recording_required: bool,
}

/// Why a session cannot be booked (or changed that way). The code is stable; the message is
/// for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    #[error("the session ends before it starts")]
    EndsBeforeStart,
    #[error("a session lasts at most 12 hours")]
    TooLong,
    #[error("the capacity must be between 1 and {SESSION_CAPACITY_MAX}")]
    BadCapacity,
    #[error("there is no edge {edge}")]
    UnknownEdge { edge: String },
    #[error("edge {edge} is {status}: it takes no new sessions")]
    EdgeUnavailable { edge: String, status: String },
    #[error("edge {edge} takes at most {limit} participants; {capacity} asked")]
    AboveEdgeCapacity {
        edge: String,
        limit: i64,
        capacity: i64,
    },
    #[error(
        "edge {edge} cannot record, and this session requires a recording: choose a recording policy of off or optional, or an edge that records"
    )]
    RecorderUnavailable { edge: String },
    #[error("the teacher already teaches \"{title}\" then")]
    TeacherBusy { session: String, title: String },
    #[error("room {room} is already booked for \"{title}\" then")]
    RoomBusy {
        session: String,
        title: String,
        room: String,
    },
}

/// Checks a proposal against its edge and the sessions it overlaps in time (the session being
/// edited itself is left out by the caller).
pub fn check(
    proposal: &Proposal,
    edge: Option<&EdgeFacts>,
    edge_id: &str,
    overlapping: &[Booked],
) -> Result<(), Refusal> {
    if proposal.ends_at <= proposal.starts_at {
        return Err(Refusal::EndsBeforeStart);
    }
    if proposal.ends_at - proposal.starts_at > SESSION_LENGTH_MAX_MS {
        return Err(Refusal::TooLong);
    }
    if !(1..=SESSION_CAPACITY_MAX).contains(&proposal.capacity) {
        return Err(Refusal::BadCapacity);
    }
    let Some(edge) = edge else {
        return Err(Refusal::UnknownEdge {
            edge: edge_id.to_owned(),
        });
    };
    if edge.status != "active" {
        return Err(Refusal::EdgeUnavailable {
            edge: edge.id.clone(),
            status: edge.status.clone(),
        });
    }
    if proposal.capacity > edge.capacity {
        return Err(Refusal::AboveEdgeCapacity {
            edge: edge.id.clone(),
            limit: edge.capacity,
            capacity: proposal.capacity,
        });
    }
    // The seed's rule for recording: a class that requires one hard-fails rather than run
    // unrecorded, so it is refused when it is booked, not when it is about to start.
    if proposal.recording_required && !edge.records {
        return Err(Refusal::RecorderUnavailable {
            edge: edge.id.clone(),
        });
    }
    if let Some(other) = overlapping
        .iter()
        .find(|b| b.teacher_id == proposal.teacher_id)
    {
        return Err(Refusal::TeacherBusy {
            session: other.id.clone(),
            title: other.title.clone(),
        });
    }
    if let Some(room) = &proposal.room
        && let Some(other) = overlapping.iter().find(|b| b.room.as_ref() == Some(room))
    {
        return Err(Refusal::RoomBusy {
            session: other.id.clone(),
            title: other.title.clone(),
            room: room.clone(),
        });
    }
    Ok(())
}

/// Why a session cannot start now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StartRefusal {
    #[error("the session starts in {minutes} minutes; it may start at most {margin} minutes early")]
    TooEarly { minutes: i64, margin: i64 },
    #[error("the session's time is over")]
    Over,
    #[error("the session was cancelled")]
    Cancelled,
    #[error("the session has already ended")]
    Ended,
}

/// Whether a session in `status`, booked from `starts_at` to `ends_at`, may start at `now`
/// (a session already live may "start" again: a teacher's second tab).
pub fn may_start(
    now: i64,
    status: &str,
    starts_at: i64,
    ends_at: i64,
    early_margin_ms: i64,
) -> Result<(), StartRefusal> {
    match status {
        "cancelled" => return Err(StartRefusal::Cancelled),
        "ended" => return Err(StartRefusal::Ended),
        _ => {}
    }
    if now >= ends_at {
        return Err(StartRefusal::Over);
    }
    if now < starts_at - early_margin_ms {
        let minute = 60_000;
        return Err(StartRefusal::TooEarly {
            minutes: (starts_at - now + minute - 1) / minute,
            margin: early_margin_ms / minute,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1000;

    fn edge(status: &str) -> EdgeFacts {
        EdgeFacts {
            id: "north".into(),
            status: status.into(),
            capacity: 200,
            records: false,
        }
    }

    fn proposal() -> Proposal {
        Proposal {
            starts_at: 10 * HOUR,
            ends_at: 11 * HOUR,
            teacher_id: "t1".into(),
            room: Some("B12".into()),
            capacity: 30,
            recording_required: false,
        }
    }

    fn booked(teacher: &str, room: Option<&str>) -> Booked {
        Booked {
            id: "s9".into(),
            title: "Algebra".into(),
            teacher_id: teacher.into(),
            room: room.map(Into::into),
        }
    }

    #[test]
    fn a_good_proposal_passes_and_each_rule_refuses_clearly() {
        let active = edge("active");
        assert_eq!(check(&proposal(), Some(&active), "north", &[]), Ok(()));
        let backwards = Proposal {
            ends_at: 9 * HOUR,
            ..proposal()
        };
        assert_eq!(
            check(&backwards, Some(&active), "north", &[]),
            Err(Refusal::EndsBeforeStart)
        );
        let empty = Proposal {
            ends_at: 10 * HOUR,
            ..proposal()
        };
        assert_eq!(
            check(&empty, Some(&active), "north", &[]),
            Err(Refusal::EndsBeforeStart)
        );
        let marathon = Proposal {
            ends_at: 23 * HOUR,
            ..proposal()
        };
        assert_eq!(
            check(&marathon, Some(&active), "north", &[]),
            Err(Refusal::TooLong)
        );
        for capacity in [0, -1, SESSION_CAPACITY_MAX + 1] {
            let bad = Proposal {
                capacity,
                ..proposal()
            };
            assert_eq!(
                check(&bad, Some(&active), "north", &[]),
                Err(Refusal::BadCapacity)
            );
        }
        assert!(
            matches!(check(&proposal(), None, "south", &[]), Err(Refusal::UnknownEdge { edge }) if edge == "south")
        );
        for status in ["draining", "disabled"] {
            assert!(matches!(
                check(&proposal(), Some(&edge(status)), "north", &[]),
                Err(Refusal::EdgeUnavailable { .. })
            ));
        }
        let crowd = Proposal {
            capacity: 201,
            ..proposal()
        };
        assert!(matches!(
            check(&crowd, Some(&active), "north", &[]),
            Err(Refusal::AboveEdgeCapacity {
                limit: 200,
                capacity: 201,
                ..
            })
        ));
        assert!(matches!(
            check(&proposal(), Some(&active), "north", &[booked("t1", None)]),
            Err(Refusal::TeacherBusy { .. })
        ));
        assert!(matches!(
            check(
                &proposal(),
                Some(&active),
                "north",
                &[booked("t2", Some("B12"))]
            ),
            Err(Refusal::RoomBusy { .. })
        ));
        // Another teacher in another room at the same time is fine; so is no room at all.
        assert_eq!(
            check(
                &proposal(),
                Some(&active),
                "north",
                &[booked("t2", Some("C1"))]
            ),
            Ok(())
        );
        let roomless = Proposal {
            room: None,
            ..proposal()
        };
        assert_eq!(
            check(&roomless, Some(&active), "north", &[booked("t2", None)]),
            Ok(())
        );
    }

    #[test]
    fn a_session_starts_in_its_window_or_a_little_early() {
        let margin = EARLY_START_MARGIN_MS;
        let (starts, ends) = (10 * HOUR, 11 * HOUR);
        assert_eq!(may_start(starts, "scheduled", starts, ends, margin), Ok(()));
        assert_eq!(
            may_start(starts - margin, "scheduled", starts, ends, margin),
            Ok(())
        );
        assert_eq!(
            may_start(starts - margin - 1, "scheduled", starts, ends, margin),
            Err(StartRefusal::TooEarly {
                minutes: 16,
                margin: 15
            })
        );
        assert_eq!(
            may_start(ends, "scheduled", starts, ends, margin),
            Err(StartRefusal::Over)
        );
        assert_eq!(
            may_start(starts, "cancelled", starts, ends, margin),
            Err(StartRefusal::Cancelled)
        );
        assert_eq!(
            may_start(starts, "ended", starts, ends, margin),
            Err(StartRefusal::Ended)
        );
        assert_eq!(may_start(starts + 1, "live", starts, ends, margin), Ok(()));
    }

    #[test]
    fn a_required_recording_needs_an_edge_that_records() {
        let required = Proposal {
            recording_required: true,
            ..proposal()
        };
        assert_eq!(
            check(&required, Some(&edge("active")), "north", &[]),
            Err(Refusal::RecorderUnavailable {
                edge: "north".into()
            })
        );
        let recorder = EdgeFacts {
            records: true,
            ..edge("active")
        };
        assert_eq!(check(&required, Some(&recorder), "north", &[]), Ok(()));
        // Optional or off: any edge.
        assert_eq!(
            check(&proposal(), Some(&edge("active")), "north", &[]),
            Ok(())
        );
    }
}
