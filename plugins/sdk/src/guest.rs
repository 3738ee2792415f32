//! The component glue: the WIT bindings, conversions between them and the SDK's types, and the
//! host as the plugin sees it. Only built for `wasm32` (a plugin loaded by a node).

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "export_component",
    default_bindings_module: "multistream_plugin_sdk::guest",
});

use multistream::plugin::host as imports;
use multistream::plugin::types as wit;

use crate::{Audience, Capability, Level, Participant, Role};

/// The host of a plugin running in a node.
pub struct NodeHost;

impl crate::Host for NodeHost {
    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => imports::Level::Debug,
            Level::Info => imports::Level::Info,
            Level::Warn => imports::Level::Warn,
            Level::Error => imports::Level::Error,
        };
        imports::log(level, message);
    }

    fn kv_get(&mut self, key: &str) -> Option<Vec<u8>> {
        imports::kv_get(key)
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        imports::kv_set(key, value)
    }

    fn kv_delete(&mut self, key: &str) {
        imports::kv_delete(key);
    }

    fn random_u64(&mut self) -> u64 {
        imports::random_u64()
    }
}

pub fn participant(p: wit::Participant) -> Participant {
    Participant {
        id: p.id,
        name: p.name,
        role: match p.role {
            wit::Role::Teacher => Role::Teacher,
            wit::Role::Student => Role::Student,
            wit::Role::Guest => Role::Guest,
        },
    }
}

pub fn event(e: wit::Event) -> crate::Event {
    crate::Event {
        seq: e.seq,
        at_ms: e.at_ms,
        actor: participant(e.actor),
        kind: e.kind,
        plugin: e.plugin,
        body: e.body,
    }
}

pub fn action(a: wit::Action) -> crate::Action {
    crate::Action {
        actor: participant(a.actor),
        at_ms: a.at_ms,
        name: a.name,
        payload: a.payload,
    }
}

pub fn effects(effects: Vec<crate::Effect>) -> Vec<wit::Effect> {
    effects
        .into_iter()
        .map(|effect| match effect {
            crate::Effect::Emit(body) => wit::Effect::Emit(body),
            crate::Effect::PostChat(text) => wit::Effect::PostChat(text),
            crate::Effect::Show { audience, body } => wit::Effect::Show(wit::View {
                audience: match audience {
                    Audience::Everyone => wit::Audience::Everyone,
                    Audience::Teachers => wit::Audience::Teachers,
                    Audience::Students => wit::Audience::Students,
                    Audience::Participant(id) => wit::Audience::Participant(id),
                },
                body,
            }),
        })
        .collect()
}

pub fn manifest(m: crate::Manifest) -> wit::Manifest {
    wit::Manifest {
        name: m.name,
        version: m.version,
        title: m.title,
        subscribes: m.subscribes,
        capabilities: m
            .capabilities
            .into_iter()
            .map(|c| match c {
                Capability::EmitEvents => wit::Capability::EmitEvents,
                Capability::ShowPanel => wit::Capability::ShowPanel,
                Capability::PostChat => wit::Capability::PostChat,
                Capability::StoreState => wit::Capability::StoreState,
            })
            .collect(),
    }
}

/// Makes a [`crate::Plugin`] the component's exports. Call once in the plugin crate:
/// `multistream_plugin_sdk::plugin!(Polls);`.
#[macro_export]
macro_rules! plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)] // the component glue wit-bindgen generates
        mod __multistream_plugin_component {
            use super::*;
            use $crate::Plugin as _;

            static STATE: ::std::sync::Mutex<Option<$plugin>> = ::std::sync::Mutex::new(None);

            fn with<R>(f: impl FnOnce(&mut $plugin) -> R) -> R {
                let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
                let plugin = state.get_or_insert_with(<$plugin as $crate::Plugin>::new);
                f(plugin)
            }

            struct Component;

            impl $crate::guest::Guest for Component {
                fn manifest() -> $crate::guest::multistream::plugin::types::Manifest {
                    $crate::guest::manifest(<$plugin as $crate::Plugin>::manifest())
                }

                fn on_event(
                    event: $crate::guest::multistream::plugin::types::Event,
                ) -> Result<Vec<$crate::guest::multistream::plugin::types::Effect>, String> {
                    let event = $crate::guest::event(event);
                    with(|plugin| {
                        let mut host = $crate::guest::NodeHost;
                        let mut context = $crate::Context::new(&mut host);
                        plugin.on_event(&mut context, &event)?;
                        Ok($crate::guest::effects(context.into_effects()))
                    })
                }

                fn on_action(
                    action: $crate::guest::multistream::plugin::types::Action,
                ) -> Result<Vec<$crate::guest::multistream::plugin::types::Effect>, String> {
                    let action = $crate::guest::action(action);
                    with(|plugin| {
                        let mut host = $crate::guest::NodeHost;
                        let mut context = $crate::Context::new(&mut host);
                        plugin.on_action(&mut context, &action)?;
                        Ok($crate::guest::effects(context.into_effects()))
                    })
                }

                fn snapshot() -> Vec<u8> {
                    with(|plugin| plugin.snapshot())
                }

                fn restore(state: Vec<u8>) -> Result<(), String> {
                    let restored = <$plugin as $crate::Plugin>::restore(&state)?;
                    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(restored);
                    Ok(())
                }
            }

            $crate::guest::export_component!(Component with_types_in $crate::guest);
        }
    };
}
