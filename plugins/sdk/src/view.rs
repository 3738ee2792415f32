//! The view language: what a plugin's panel shows, as JSON the browser client renders. Build a
//! [`View`] and pass it to [`crate::Context::show`].
//!
//! Every interactive block names an action; pressing it sends the action to the plugin with the
//! block's `data` (and, for choices and forms, what the participant chose or typed) as payload.

use serde::{Deserialize, Serialize};

/// A panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub title: String,
    pub blocks: Vec<Block>,
}

/// One part of a panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Heading {
        text: String,
    },
    Text {
        text: String,
    },
    /// Options to pick from; sends `action` with `data` plus `{"choices": [indexes]}`.
    Choices {
        action: String,
        data: serde_json::Value,
        multiple: bool,
        options: Vec<String>,
        /// What this participant picked before.
        selected: Vec<usize>,
        submit: String,
    },
    /// A bar chart of counts.
    Bars {
        items: Vec<Bar>,
        total: u64,
    },
    /// A list of lines, each with an optional small note and buttons.
    List {
        items: Vec<Item>,
    },
    /// A button; sends `action` with `data`.
    Button {
        label: String,
        action: String,
        data: serde_json::Value,
    },
    /// A form; sends `action` with `{field name: value}`.
    Form {
        action: String,
        submit: String,
        fields: Vec<Field>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub label: String,
    pub value: u64,
    /// Who chose it, when that may be shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub text: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<ItemButton>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemButton {
    pub label: String,
    pub action: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub label: String,
    pub kind: FieldKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// One line of text.
    Text,
    /// Several lines, sent as a list of non-empty lines.
    Lines,
    /// A yes/no box, sent as a boolean.
    Checkbox,
}
