//! Polls: the teacher creates a poll (single or multiple choice, optionally anonymous), opens
//! and closes it, and chooses when students see the results; each student votes once, and a new
//! vote replaces the old one. The teacher sees results live.
//!
//! Actions (what the panel's buttons send) are checked and recorded as events; the state changes
//! only when those events come back, so a restart, an upgrade or a replay rebuilds it exactly.

use std::collections::BTreeMap;

use multistream_plugin_sdk::view::{Bar, Block, Field, FieldKind, View};
use multistream_plugin_sdk::{
    Action, Audience, Capability, Context, Event, Manifest, Participant, Plugin, parse,
    restore_json, snapshot_json,
};
use serde::{Deserialize, Serialize};

multistream_plugin_sdk::plugin!(Polls);

/// The plugin's version. The `next-version` feature builds the same code under a higher
/// version, which the node's hot-upgrade test loads into a running class.
const VERSION: &str = if cfg!(feature = "next-version") {
    "0.2.0-next"
} else {
    env!("CARGO_PKG_VERSION")
};

/// Options of one poll, at most.
pub const OPTIONS_MAX: usize = 10;
/// Polls of one class, at most.
pub const POLLS_MAX: usize = 100;
/// Longest question or option, in characters.
pub const TEXT_CHARS_MAX: usize = 300;

/// What the plugin records in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Recorded {
    Created {
        poll: u32,
        question: String,
        options: Vec<String>,
        multiple: bool,
        anonymous: bool,
    },
    Opened {
        poll: u32,
    },
    Closed {
        poll: u32,
    },
    ResultsShown {
        poll: u32,
        shown: bool,
    },
    Voted {
        poll: u32,
        voter: String,
        name: String,
        choices: Vec<usize>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Poll {
    id: u32,
    question: String,
    options: Vec<String>,
    multiple: bool,
    anonymous: bool,
    open: bool,
    results_shown: bool,
    /// Voter id → (name, choices).
    votes: BTreeMap<String, (String, Vec<usize>)>,
}

impl Poll {
    fn counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.options.len()];
        for (_, choices) in self.votes.values() {
            for &choice in choices {
                if let Some(count) = counts.get_mut(choice) {
                    *count += 1;
                }
            }
        }
        counts
    }

    fn bars(&self, with_names: bool) -> Block {
        let counts = self.counts();
        Block::Bars {
            items: self
                .options
                .iter()
                .zip(counts)
                .enumerate()
                .map(|(index, (label, value))| Bar {
                    label: label.clone(),
                    value,
                    names: if with_names {
                        self.votes
                            .values()
                            .filter(|(_, c)| c.contains(&index))
                            .map(|(name, _)| name.clone())
                            .collect()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
            total: self.votes.len() as u64,
        }
    }
}

/// The plugin's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Polls {
    polls: Vec<Poll>,
}

#[derive(Deserialize)]
struct CreatePayload {
    question: String,
    options: Vec<String>,
    #[serde(default)]
    multiple: bool,
    #[serde(default)]
    anonymous: bool,
}

#[derive(Deserialize)]
struct PollPayload {
    poll: u32,
}

#[derive(Deserialize)]
struct VotePayload {
    poll: u32,
    choices: Vec<usize>,
}

fn clean(text: &str, what: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if text.chars().count() > TEXT_CHARS_MAX {
        return Err(format!(
            "the {what} is longer than {TEXT_CHARS_MAX} characters"
        ));
    }
    Ok(text.to_owned())
}

impl Polls {
    fn poll(&self, id: u32) -> Result<&Poll, String> {
        self.polls
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| format!("there is no poll {id}"))
    }

    fn teacher_view(&self) -> View {
        let mut blocks = vec![Block::Form {
            action: "create".into(),
            submit: "Create poll".into(),
            fields: vec![
                Field {
                    name: "question".into(),
                    label: "Question".into(),
                    kind: FieldKind::Text,
                },
                Field {
                    name: "options".into(),
                    label: "Answers, one per line".into(),
                    kind: FieldKind::Lines,
                },
                Field {
                    name: "multiple".into(),
                    label: "Allow several answers".into(),
                    kind: FieldKind::Checkbox,
                },
                Field {
                    name: "anonymous".into(),
                    label: "Anonymous".into(),
                    kind: FieldKind::Checkbox,
                },
            ],
        }];
        for poll in self.polls.iter().rev() {
            let state = match (poll.open, poll.votes.is_empty()) {
                (true, _) => "open",
                (false, true) => "not open yet",
                (false, false) => "closed",
            };
            blocks.push(Block::Heading {
                text: format!("{} ({state})", poll.question),
            });
            blocks.push(poll.bars(!poll.anonymous));
            let data = serde_json::json!({ "poll": poll.id });
            let toggle = if poll.open {
                ("Close poll", "close")
            } else {
                ("Open poll", "open")
            };
            blocks.push(Block::Button {
                label: toggle.0.into(),
                action: toggle.1.into(),
                data: data.clone(),
            });
            blocks.push(Block::Button {
                label: if poll.results_shown {
                    "Hide results from students".into()
                } else {
                    "Show results to students".into()
                },
                action: if poll.results_shown {
                    "hide_results".into()
                } else {
                    "show_results".into()
                },
                data,
            });
        }
        View {
            title: "Polls".into(),
            blocks,
        }
    }

    /// What students see; with `voter`, that student's own choices.
    fn student_view(&self, voter: Option<&str>) -> View {
        let mut blocks = Vec::new();
        for poll in self.polls.iter().rev() {
            if !poll.open && !poll.results_shown {
                continue;
            }
            blocks.push(Block::Heading {
                text: poll.question.clone(),
            });
            let mine = voter
                .and_then(|v| poll.votes.get(v))
                .map(|(_, choices)| choices.clone())
                .unwrap_or_default();
            if poll.open {
                blocks.push(Block::Choices {
                    action: "vote".into(),
                    data: serde_json::json!({ "poll": poll.id }),
                    multiple: poll.multiple,
                    options: poll.options.clone(),
                    submit: if mine.is_empty() {
                        "Vote".into()
                    } else {
                        "Change my vote".into()
                    },
                    selected: mine,
                });
            } else {
                blocks.push(Block::Text {
                    text: "This poll is closed.".into(),
                });
            }
            if poll.results_shown {
                blocks.push(poll.bars(false));
            }
        }
        if blocks.is_empty() {
            blocks.push(Block::Text {
                text: "No poll is open.".into(),
            });
        }
        View {
            title: "Polls".into(),
            blocks,
        }
    }

    /// Views for everyone after a change to `poll`.
    fn show_all(&self, context: &mut Context<'_>, poll: Option<u32>) {
        context.show(Audience::Teachers, &self.teacher_view());
        context.show(Audience::Students, &self.student_view(None));
        // Voters of the changed poll see their own choices.
        let voters: Vec<&String> = self
            .polls
            .iter()
            .filter(|p| poll.is_none_or(|id| p.id == id))
            .flat_map(|p| p.votes.keys())
            .collect();
        for voter in voters {
            context.show(
                Audience::Participant(voter.clone()),
                &self.student_view(Some(voter)),
            );
        }
    }
}

fn only_teacher(actor: &Participant) -> Result<(), String> {
    if actor.is_teacher() {
        Ok(())
    } else {
        Err("only the teacher manages polls".into())
    }
}

impl Plugin for Polls {
    fn manifest() -> Manifest {
        Manifest::new(
            "polls",
            VERSION,
            "Polls",
            &[Capability::EmitEvents, Capability::ShowPanel],
        )
    }

    fn new() -> Self {
        Self::default()
    }

    fn on_action(&mut self, context: &mut Context<'_>, action: &Action) -> Result<(), String> {
        let actor = &action.actor;
        let recorded = match action.name.as_str() {
            "create" => {
                only_teacher(actor)?;
                let payload: CreatePayload = parse(&action.payload, "the new poll")?;
                if self.polls.len() >= POLLS_MAX {
                    return Err(format!("a class has at most {POLLS_MAX} polls"));
                }
                let options = payload
                    .options
                    .iter()
                    .filter(|o| !o.trim().is_empty())
                    .map(|o| clean(o, "answer"))
                    .collect::<Result<Vec<_>, _>>()?;
                if !(2..=OPTIONS_MAX).contains(&options.len()) {
                    return Err(format!("a poll has 2 to {OPTIONS_MAX} answers"));
                }
                Recorded::Created {
                    poll: self.polls.iter().map(|p| p.id).max().unwrap_or(0) + 1,
                    question: clean(&payload.question, "question")?,
                    options,
                    multiple: payload.multiple,
                    anonymous: payload.anonymous,
                }
            }
            "open" | "close" | "show_results" | "hide_results" => {
                only_teacher(actor)?;
                let PollPayload { poll } = parse(&action.payload, "the poll")?;
                self.poll(poll)?;
                match action.name.as_str() {
                    "open" => Recorded::Opened { poll },
                    "close" => Recorded::Closed { poll },
                    "show_results" => Recorded::ResultsShown { poll, shown: true },
                    _ => Recorded::ResultsShown { poll, shown: false },
                }
            }
            "vote" => {
                let VotePayload { poll, mut choices } = parse(&action.payload, "the vote")?;
                let target = self.poll(poll)?;
                if !target.open {
                    return Err("this poll is not open".into());
                }
                choices.sort_unstable();
                choices.dedup();
                if choices.is_empty() {
                    return Err("choose an answer".into());
                }
                if !target.multiple && choices.len() > 1 {
                    return Err("this poll takes one answer".into());
                }
                if choices.iter().any(|&c| c >= target.options.len()) {
                    return Err("that answer is not in the poll".into());
                }
                Recorded::Voted {
                    poll,
                    voter: actor.id.clone(),
                    name: actor.name.clone(),
                    choices,
                }
            }
            other => return Err(format!("polls do not know the action {other:?}")),
        };
        context.emit(&recorded);
        Ok(())
    }

    fn on_event(&mut self, context: &mut Context<'_>, event: &Event) -> Result<(), String> {
        if event.kind == "enabled" {
            self.show_all(context, None);
            return Ok(());
        }
        if event.kind != "plugin" {
            return Ok(());
        }
        let recorded: Recorded = parse(&event.body, "a polls event")?;
        let changed = match recorded {
            Recorded::Created {
                poll,
                question,
                options,
                multiple,
                anonymous,
            } => {
                self.polls.push(Poll {
                    id: poll,
                    question,
                    options,
                    multiple,
                    anonymous,
                    open: false,
                    results_shown: false,
                    votes: BTreeMap::new(),
                });
                poll
            }
            Recorded::Opened { poll } | Recorded::Closed { poll } => {
                let open = matches!(recorded, Recorded::Opened { .. });
                if let Some(p) = self.polls.iter_mut().find(|p| p.id == poll) {
                    p.open = open;
                }
                poll
            }
            Recorded::ResultsShown { poll, shown } => {
                if let Some(p) = self.polls.iter_mut().find(|p| p.id == poll) {
                    p.results_shown = shown;
                }
                poll
            }
            Recorded::Voted {
                poll,
                voter,
                name,
                choices,
            } => {
                if let Some(p) = self.polls.iter_mut().find(|p| p.id == poll) {
                    p.votes.insert(voter, (name, choices));
                }
                poll
            }
        };
        self.show_all(context, Some(changed));
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        snapshot_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        restore_json(bytes, "polls")
    }
}

#[cfg(test)]
mod tests {
    use multistream_plugin_sdk::testing::Harness;

    use super::*;

    fn bars(view: &str) -> Vec<u64> {
        let view: View = serde_json::from_str(view).expect("a view");
        view.blocks
            .iter()
            .find_map(|b| match b {
                Block::Bars { items, .. } => Some(items.iter().map(|i| i.value).collect()),
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn switching_it_on_shows_the_first_panels() {
        let mut class = Harness::<Polls>::new();
        let teacher = class.teacher("t-1", "Ms Rivera");
        assert!(class.view(&Audience::Teachers).is_none());
        class.enable(&teacher).expect("enabled");
        let teacher_view = class
            .view(&Audience::Teachers)
            .expect("the teacher's panel");
        assert!(teacher_view.contains("Create poll"), "{teacher_view}");
        let students = class
            .view(&Audience::Students)
            .expect("the students' panel");
        assert!(students.contains("No poll is open"), "{students}");
    }

    #[test]
    fn a_poll_is_created_opened_voted_and_revealed() {
        let mut class = Harness::<Polls>::new();
        let teacher = class.teacher("t-1", "Ms Rivera");
        let ana = class.student("s-1", "Ana");
        let ben = class.student("s-2", "Ben");
        class
            .act(
                &teacher,
                "create",
                r#"{"question":"Is light a wave?","options":["Yes","No","Both"]}"#,
            )
            .expect("created");
        assert_eq!(
            class.act(&ana, "vote", r#"{"poll":1,"choices":[0]}"#),
            Err("this poll is not open".into())
        );
        class
            .act(&teacher, "open", r#"{"poll":1}"#)
            .expect("opened");
        class
            .act(&ana, "vote", r#"{"poll":1,"choices":[0]}"#)
            .expect("votes");
        class
            .act(&ben, "vote", r#"{"poll":1,"choices":[1]}"#)
            .expect("votes");
        // Ana changes her mind: her vote is replaced, not added.
        class
            .act(&ana, "vote", r#"{"poll":1,"choices":[2]}"#)
            .expect("votes again");
        let teacher_view = class.view_of(&teacher).expect("the teacher has a view");
        assert_eq!(bars(teacher_view), vec![0, 1, 1]);
        assert!(teacher_view.contains("Ana"), "names shown for a named poll");
        // Students see no results until the teacher shows them.
        assert!(bars(class.view_of(&ben).expect("a view")).is_empty());
        class
            .act(&teacher, "show_results", r#"{"poll":1}"#)
            .expect("shown");
        assert_eq!(bars(class.view_of(&ben).expect("a view")), vec![0, 1, 1]);
        assert!(
            !class.view_of(&ben).expect("a view").contains("Ana"),
            "students never see names"
        );
        // Ana's own view shows her choice.
        assert!(
            class
                .view_of(&ana)
                .expect("a view")
                .contains(r#""selected":[2]"#)
        );
        class
            .act(&teacher, "close", r#"{"poll":1}"#)
            .expect("closed");
        assert!(
            class
                .act(&ben, "vote", r#"{"poll":1,"choices":[0]}"#)
                .is_err()
        );
    }

    #[test]
    fn bad_actions_are_refused_with_reasons() {
        let mut class = Harness::<Polls>::new();
        let teacher = class.teacher("t-1", "T");
        let ana = class.student("s-1", "Ana");
        assert!(
            class
                .act(&ana, "create", r#"{"question":"q","options":["a","b"]}"#)
                .is_err()
        );
        let one_option = class.act(&teacher, "create", r#"{"question":"q","options":["a"]}"#);
        assert_eq!(
            one_option,
            Err(format!("a poll has 2 to {OPTIONS_MAX} answers"))
        );
        assert!(class.act(&teacher, "create", "not json").is_err());
        assert!(class.act(&teacher, "open", r#"{"poll":9}"#).is_err());
        assert!(class.act(&teacher, "explode", "{}").is_err());
        class
            .act(
                &teacher,
                "create",
                r#"{"question":"q","options":["a","b"]}"#,
            )
            .expect("created");
        class
            .act(&teacher, "open", r#"{"poll":1}"#)
            .expect("opened");
        assert_eq!(
            class.act(&ana, "vote", r#"{"poll":1,"choices":[0,1]}"#),
            Err("this poll takes one answer".into())
        );
        assert!(
            class
                .act(&ana, "vote", r#"{"poll":1,"choices":[5]}"#)
                .is_err()
        );
        assert!(
            class
                .act(&ana, "vote", r#"{"poll":1,"choices":[]}"#)
                .is_err()
        );
        assert_eq!(class.log.len(), 2, "nothing refused reached the log");
    }

    #[test]
    fn anonymous_polls_hide_names_and_state_survives_restarts_and_replays() {
        let mut class = Harness::<Polls>::new();
        let teacher = class.teacher("t-1", "T");
        let ana = class.student("s-1", "Ana");
        class
            .act(
                &teacher,
                "create",
                r#"{"question":"Pick","options":["a","b","c"],"multiple":true,"anonymous":true}"#,
            )
            .expect("created");
        class
            .act(&teacher, "open", r#"{"poll":1}"#)
            .expect("opened");
        class
            .act(&ana, "vote", r#"{"poll":1,"choices":[0,2]}"#)
            .expect("votes");
        let before = class.view_of(&teacher).expect("a view").to_owned();
        assert!(!before.contains("Ana"), "an anonymous poll shows no names");
        assert_eq!(bars(&before), vec![1, 0, 1]);
        class.restart_from_snapshot().expect("restores");
        class.rebuild_from_log().expect("replays");
        assert_eq!(class.view_of(&teacher), Some(before.as_str()));
        // And it goes on working.
        class
            .act(&ana, "vote", r#"{"poll":1,"choices":[1]}"#)
            .expect("votes");
        assert_eq!(
            bars(class.view_of(&teacher).expect("a view")),
            vec![0, 1, 0]
        );
    }
}
