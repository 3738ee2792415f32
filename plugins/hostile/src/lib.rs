//! A plugin that misbehaves when asked, to prove the host contains it. Its actions:
//! - `loop`: never returns;
//! - `grow`: allocates until memory runs out;
//! - `panic`: panics;
//! - `flood`: returns far more effects than a call may;
//! - `huge`: returns one enormous effect;
//! - `chat`: posts a chat line, which its manifest does not allow;
//! - `garbage`: emits an event whose body is not JSON;
//! - `count`: behaves (emits an event that counts calls), so a test can see it working again;
//! - `spin`: busy for `{"iterations": n}` rounds, then answers normally: a slow but legitimate
//!   call, for measuring what a busy plugin costs the rest of the node.

use multistream_plugin_sdk::{Action, Capability, Context, Event, Manifest, Plugin};

multistream_plugin_sdk::plugin!(Hostile);

#[derive(Default)]
pub struct Hostile {
    counted: u64,
    hoard: Vec<Vec<u8>>,
}

/// `n` of a `{"iterations": n}` payload (without a JSON parser: this plugin stays tiny).
fn iterations_of(payload: &str) -> u64 {
    payload
        .split(|c: char| !c.is_ascii_digit())
        .find(|part| !part.is_empty())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(1_000)
}

impl Plugin for Hostile {
    fn manifest() -> Manifest {
        Manifest {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "Hostile (tests only)".into(),
            subscribes: Vec::new(),
            capabilities: vec![Capability::EmitEvents, Capability::ShowPanel],
        }
    }

    fn new() -> Self {
        Self::default()
    }

    fn on_action(&mut self, context: &mut Context<'_>, action: &Action) -> Result<(), String> {
        match action.name.as_str() {
            "loop" => {
                let mut spins: u64 = 0;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            "grow" => loop {
                self.hoard.push(vec![7u8; 1 << 20]);
            },
            "panic" => panic!("asked to panic"),
            "flood" => {
                for n in 0..1_000u32 {
                    context.emit(&n);
                }
            }
            "huge" => context.emit(&"x".repeat(2 << 20)),
            "chat" => context.post_chat("not allowed to say this"),
            "garbage" => context.push(multistream_plugin_sdk::Effect::Emit("{not json".into())),
            "count" => context.emit(&(self.counted + 1)),
            "spin" => {
                let rounds = iterations_of(&action.payload);
                let mut x: u64 = 1;
                for round in 0..rounds {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ round);
                }
                let _ = x;
            }
            other => return Err(format!("unknown action {other:?}")),
        }
        Ok(())
    }

    fn on_event(&mut self, _context: &mut Context<'_>, event: &Event) -> Result<(), String> {
        if event.kind == "plugin" {
            self.counted = event.body.parse().map_err(|_| "a bad count".to_owned())?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        self.counted.to_le_bytes().to_vec()
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let bytes: [u8; 8] = bytes
            .try_into()
            .map_err(|_| "not a hostile snapshot".to_owned())?;
        Ok(Self {
            counted: u64::from_le_bytes(bytes),
            hoard: Vec::new(),
        })
    }
}
