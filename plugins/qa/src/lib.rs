//! Q&A: students ask questions (optionally anonymously) and upvote others' once; the teacher sees
//! the open questions sorted by votes and marks each answered or dismisses it; everyone sees the
//! list.
//!
//! As in every plugin, actions are checked and recorded as events, and the state changes only
//! when those events come back in log order.

use std::collections::BTreeSet;

use multistream_plugin_sdk::view::{Block, Field, FieldKind, Item, ItemButton, View};
use multistream_plugin_sdk::{
    Action, Audience, Capability, Context, Event, Manifest, Plugin, parse, restore_json,
    snapshot_json,
};
use serde::{Deserialize, Serialize};

multistream_plugin_sdk::plugin!(Qa);

/// Longest question, in characters.
pub const QUESTION_CHARS_MAX: usize = 500;
/// Questions of one class, at most.
pub const QUESTIONS_MAX: usize = 1_000;
/// Open questions one participant may have at once.
pub const OPEN_QUESTIONS_PER_PERSON_MAX: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Recorded {
    Asked {
        question: u32,
        author: String,
        name: String,
        anonymous: bool,
        text: String,
    },
    Upvoted {
        question: u32,
        voter: String,
    },
    Answered {
        question: u32,
    },
    Dismissed {
        question: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Open,
    Answered,
    Dismissed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Question {
    id: u32,
    author: String,
    name: String,
    anonymous: bool,
    text: String,
    asked_seq: u64,
    voters: BTreeSet<String>,
    status: Status,
}

/// The plugin's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Qa {
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct AskPayload {
    text: String,
    #[serde(default)]
    anonymous: bool,
}

#[derive(Deserialize)]
struct QuestionPayload {
    question: u32,
}

impl Qa {
    fn question(&self, id: u32) -> Result<&Question, String> {
        self.questions
            .iter()
            .find(|q| q.id == id)
            .ok_or_else(|| format!("there is no question {id}"))
    }

    fn set_status(&mut self, id: u32, status: Status) {
        if let Some(question) = self.questions.iter_mut().find(|q| q.id == id) {
            question.status = status;
        }
    }

    /// Open questions, most votes first, then the oldest first.
    fn open_sorted(&self) -> Vec<&Question> {
        let mut open: Vec<&Question> = self
            .questions
            .iter()
            .filter(|q| q.status == Status::Open)
            .collect();
        open.sort_by_key(|q| (std::cmp::Reverse(q.voters.len()), q.asked_seq));
        open
    }

    fn teacher_view(&self) -> View {
        let items = self
            .open_sorted()
            .into_iter()
            .map(|q| {
                let data = serde_json::json!({ "question": q.id });
                Item {
                    text: q.text.clone(),
                    note: format!(
                        "{} · {} vote{}",
                        if q.anonymous { "anonymous" } else { &q.name },
                        q.voters.len(),
                        if q.voters.len() == 1 { "" } else { "s" }
                    ),
                    buttons: vec![
                        ItemButton {
                            label: "Answered".into(),
                            action: "answer".into(),
                            data: data.clone(),
                        },
                        ItemButton {
                            label: "Dismiss".into(),
                            action: "dismiss".into(),
                            data,
                        },
                    ],
                }
            })
            .collect::<Vec<_>>();
        let answered = self
            .questions
            .iter()
            .filter(|q| q.status == Status::Answered)
            .count();
        let mut blocks = vec![Block::Heading {
            text: format!("{} open questions, {answered} answered", items.len()),
        }];
        blocks.push(Block::List { items });
        View {
            title: "Q&A".into(),
            blocks,
        }
    }

    /// The students' view; with `viewer`, their upvotes are marked.
    fn student_view(&self, viewer: Option<&str>) -> View {
        let mut blocks = vec![Block::Form {
            action: "ask".into(),
            submit: "Ask".into(),
            fields: vec![
                Field {
                    name: "text".into(),
                    label: "Your question".into(),
                    kind: FieldKind::Text,
                },
                Field {
                    name: "anonymous".into(),
                    label: "Ask anonymously".into(),
                    kind: FieldKind::Checkbox,
                },
            ],
        }];
        let items = self
            .open_sorted()
            .into_iter()
            .map(|q| {
                let voted = viewer.is_some_and(|v| q.voters.contains(v));
                let own = viewer.is_some_and(|v| v == q.author);
                Item {
                    text: q.text.clone(),
                    note: format!(
                        "{} vote{}{}",
                        q.voters.len(),
                        if q.voters.len() == 1 { "" } else { "s" },
                        if voted { " · you upvoted" } else { "" }
                    ),
                    buttons: if voted || own {
                        Vec::new()
                    } else {
                        vec![ItemButton {
                            label: "Upvote".into(),
                            action: "upvote".into(),
                            data: serde_json::json!({ "question": q.id }),
                        }]
                    },
                }
            })
            .collect();
        blocks.push(Block::List { items });
        let answered: Vec<Item> = self
            .questions
            .iter()
            .filter(|q| q.status == Status::Answered)
            .map(|q| Item {
                text: q.text.clone(),
                note: "answered".into(),
                buttons: Vec::new(),
            })
            .collect();
        if !answered.is_empty() {
            blocks.push(Block::Heading {
                text: "Answered".into(),
            });
            blocks.push(Block::List { items: answered });
        }
        View {
            title: "Q&A".into(),
            blocks,
        }
    }

    fn show_all(&self, context: &mut Context<'_>) {
        context.show(Audience::Teachers, &self.teacher_view());
        context.show(Audience::Students, &self.student_view(None));
        // Everyone who asked or voted sees their own marks.
        let mut people: BTreeSet<&str> = BTreeSet::new();
        for question in &self.questions {
            people.insert(&question.author);
            people.extend(question.voters.iter().map(String::as_str));
        }
        for person in people {
            context.show(
                Audience::Participant(person.to_owned()),
                &self.student_view(Some(person)),
            );
        }
    }
}

impl Plugin for Qa {
    fn manifest() -> Manifest {
        Manifest::new(
            "qa",
            env!("CARGO_PKG_VERSION"),
            "Q&A",
            &[Capability::EmitEvents, Capability::ShowPanel],
        )
    }

    fn new() -> Self {
        Self::default()
    }

    fn on_action(&mut self, context: &mut Context<'_>, action: &Action) -> Result<(), String> {
        let actor = &action.actor;
        let recorded = match action.name.as_str() {
            "ask" => {
                let payload: AskPayload = parse(&action.payload, "the question")?;
                let text = payload.text.trim();
                if text.is_empty() {
                    return Err("the question is empty".into());
                }
                if text.chars().count() > QUESTION_CHARS_MAX {
                    return Err(format!(
                        "a question is at most {QUESTION_CHARS_MAX} characters"
                    ));
                }
                if self.questions.len() >= QUESTIONS_MAX {
                    return Err(format!("this class has its {QUESTIONS_MAX} questions"));
                }
                let open_mine = self
                    .questions
                    .iter()
                    .filter(|q| q.author == actor.id && q.status == Status::Open)
                    .count();
                if open_mine >= OPEN_QUESTIONS_PER_PERSON_MAX {
                    return Err(format!(
                        "you have {OPEN_QUESTIONS_PER_PERSON_MAX} open questions; wait for an answer"
                    ));
                }
                Recorded::Asked {
                    question: self.questions.iter().map(|q| q.id).max().unwrap_or(0) + 1,
                    author: actor.id.clone(),
                    name: actor.name.clone(),
                    anonymous: payload.anonymous,
                    text: text.to_owned(),
                }
            }
            "upvote" => {
                let QuestionPayload { question } = parse(&action.payload, "the upvote")?;
                let target = self.question(question)?;
                if target.status != Status::Open {
                    return Err("this question is no longer open".into());
                }
                if target.author == actor.id {
                    return Err("you cannot upvote your own question".into());
                }
                if target.voters.contains(&actor.id) {
                    return Err("you already upvoted this question".into());
                }
                Recorded::Upvoted {
                    question,
                    voter: actor.id.clone(),
                }
            }
            "answer" | "dismiss" => {
                if !actor.is_teacher() {
                    return Err("only the teacher answers or dismisses questions".into());
                }
                let QuestionPayload { question } = parse(&action.payload, "the question")?;
                if self.question(question)?.status != Status::Open {
                    return Err("this question is no longer open".into());
                }
                if action.name == "answer" {
                    Recorded::Answered { question }
                } else {
                    Recorded::Dismissed { question }
                }
            }
            other => return Err(format!("Q&A does not know the action {other:?}")),
        };
        context.emit(&recorded);
        Ok(())
    }

    fn on_event(&mut self, context: &mut Context<'_>, event: &Event) -> Result<(), String> {
        if event.kind == "enabled" {
            self.show_all(context);
            return Ok(());
        }
        if event.kind != "plugin" {
            return Ok(());
        }
        match parse::<Recorded>(&event.body, "a Q&A event")? {
            Recorded::Asked {
                question,
                author,
                name,
                anonymous,
                text,
            } => self.questions.push(Question {
                id: question,
                author,
                name,
                anonymous,
                text,
                asked_seq: event.seq,
                voters: BTreeSet::new(),
                status: Status::Open,
            }),
            Recorded::Upvoted { question, voter } => {
                if let Some(q) = self.questions.iter_mut().find(|q| q.id == question) {
                    q.voters.insert(voter);
                }
            }
            Recorded::Answered { question } => self.set_status(question, Status::Answered),
            Recorded::Dismissed { question } => self.set_status(question, Status::Dismissed),
        }
        self.show_all(context);
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        snapshot_json(self)
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        restore_json(bytes, "Q&A")
    }
}

#[cfg(test)]
mod tests {
    use multistream_plugin_sdk::testing::Harness;

    use super::*;

    fn listed(view: &str) -> Vec<(String, String)> {
        let view: View = serde_json::from_str(view).expect("a view");
        view.blocks
            .iter()
            .find_map(|b| match b {
                Block::List { items } => Some(
                    items
                        .iter()
                        .map(|i| (i.text.clone(), i.note.clone()))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn questions_are_asked_upvoted_once_sorted_and_answered() {
        let mut class = Harness::<Qa>::new();
        let teacher = class.teacher("t-1", "Mr Okafor");
        let ana = class.student("s-1", "Ana");
        let ben = class.student("s-2", "Ben");
        let cai = class.student("s-3", "Cai");
        class
            .act(&ana, "ask", r#"{"text":"Why is the sky blue?"}"#)
            .expect("asked");
        class
            .act(
                &ben,
                "ask",
                r#"{"text":"What is a photon?","anonymous":true}"#,
            )
            .expect("asked");
        class
            .act(&cai, "upvote", r#"{"question":2}"#)
            .expect("upvoted");
        assert_eq!(
            class.act(&cai, "upvote", r#"{"question":2}"#),
            Err("you already upvoted this question".into())
        );
        assert_eq!(
            class.act(&ben, "upvote", r#"{"question":2}"#),
            Err("you cannot upvote your own question".into())
        );
        // The teacher sees the most upvoted first, and no name on the anonymous one.
        let teacher_list = listed(class.view_of(&teacher).expect("a view"));
        assert_eq!(teacher_list[0].0, "What is a photon?");
        assert!(teacher_list[0].1.starts_with("anonymous · 1 vote"));
        assert!(teacher_list[1].1.starts_with("Ana · 0 votes"));
        // Cai's own view marks the upvote.
        let cai_list = listed(class.view_of(&cai).expect("a view"));
        assert!(cai_list[0].1.contains("you upvoted"));
        assert_eq!(
            class.act(&ana, "answer", r#"{"question":1}"#),
            Err("only the teacher answers or dismisses questions".into())
        );
        class
            .act(&teacher, "answer", r#"{"question":2}"#)
            .expect("answered");
        class
            .act(&teacher, "dismiss", r#"{"question":1}"#)
            .expect("dismissed");
        assert!(listed(class.view_of(&teacher).expect("a view")).is_empty());
        assert!(class.view_of(&cai).expect("a view").contains("answered"));
        assert!(class.act(&cai, "upvote", r#"{"question":1}"#).is_err());
    }

    #[test]
    fn limits_hold_and_state_survives_restarts_and_replays() {
        let mut class = Harness::<Qa>::new();
        let teacher = class.teacher("t-1", "T");
        let ana = class.student("s-1", "Ana");
        assert!(class.act(&ana, "ask", r#"{"text":"   "}"#).is_err());
        let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(QUESTION_CHARS_MAX + 1));
        assert!(class.act(&ana, "ask", &long).is_err());
        for n in 0..OPEN_QUESTIONS_PER_PERSON_MAX {
            class
                .act(&ana, "ask", &format!(r#"{{"text":"question {n}"}}"#))
                .expect("asked");
        }
        assert!(
            class
                .act(&ana, "ask", r#"{"text":"one too many"}"#)
                .is_err()
        );
        class
            .act(&teacher, "answer", r#"{"question":1}"#)
            .expect("answered");
        class
            .act(&ana, "ask", r#"{"text":"now there is room"}"#)
            .expect("asked");
        let before = class.view_of(&teacher).expect("a view").to_owned();
        class.restart_from_snapshot().expect("restores");
        class.rebuild_from_log().expect("replays");
        assert_eq!(class.view_of(&teacher), Some(before.as_str()));
        assert!(class.act(&ana, "explode", "{}").is_err());
    }
}
