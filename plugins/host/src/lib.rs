//! The plugin host: loads multistream plugins (WASM components of `wit/plugin.wit`) and calls
//! them under limits, so that a plugin that loops, eats memory, panics or answers garbage fails
//! that call only.
//!
//! - One [`Runtime`] per node: a wasmtime engine with the pooling allocator, epoch interruption
//!   driven by a ticker thread, compiled code cached on disk, and the linker (the plugin's host
//!   imports, and WASI with nothing in it: no environment, files, sockets or clock beyond what
//!   WASI's types need).
//! - One [`Code`] per plugin build: the compiled component, pre-linked, and its manifest.
//! - One [`Instance`] per plugin per class: its own store and memory. Every call has a deadline
//!   (epochs), the store a memory cap; what a call returns is checked (effect count, bytes,
//!   capabilities) before anything is done with it. A trap poisons the instance: the caller
//!   drops it and builds another from the last snapshot.

pub mod package;
pub mod supervisor;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as Clock};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
});

pub use multistream::plugin::host::Level;
pub use multistream::plugin::types::{Audience, Capability, Participant, Role, View};

/// How often the engine's epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Plugin instances alive at once on a node, at most (the pooling allocator's slots).
pub const INSTANCES_MAX: u32 = 256;

/// Limits of every call and instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory of one instance, at most.
    pub memory_bytes: usize,
    /// Wall-clock time of one call, at most.
    pub call_deadline: Duration,
    /// Effects one call may return.
    pub effects_max: usize,
    /// Bytes of all effects of one call together.
    pub output_bytes_max: usize,
    /// Keys in the plugin-scoped store, per instance.
    pub kv_keys_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_deadline: Duration::from_millis(200),
            effects_max: 256,
            output_bytes_max: 1 << 20,
            kv_keys_max: 1_024,
        }
    }
}

/// Longest key in the plugin-scoped store, in bytes.
pub const KV_KEY_BYTES_MAX: usize = 128;
/// Largest value in the plugin-scoped store, in bytes.
pub const KV_VALUE_BYTES_MAX: usize = 64 * 1024;

/// Why a call did not give a usable answer. The class goes on either way.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin ran past its deadline and was stopped.
    #[error("the plugin ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the cap.
    #[error("the plugin ran out of its {0} bytes of memory")]
    OutOfMemory(usize),
    /// The plugin trapped (a panic, an invalid operation); the instance cannot be used again.
    #[error("the plugin failed: {0}")]
    Trap(String),
    /// The plugin answered with an error of its own (the instance is fine).
    #[error("{0}")]
    Refused(String),
    /// The plugin's answer breaks the rules (too many effects, too large, an effect it has no
    /// capability for); nothing of it is used.
    #[error("the plugin's answer was refused: {0}")]
    InvalidOutput(String),
}

impl CallError {
    /// Whether the instance is unusable after this error and must be rebuilt.
    pub fn poisons(&self) -> bool {
        matches!(
            self,
            CallError::Timeout(_) | CallError::OutOfMemory(_) | CallError::Trap(_)
        )
    }
}

/// What an instance's store holds.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    plugin: String,
    capabilities: Vec<Capability>,
    kv: HashMap<String, Vec<u8>>,
    kv_keys_max: usize,
    random: u64,
    /// Log lines the plugin wrote during the current call (also sent to `tracing`).
    pub logs: Vec<(Level, String)>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl multistream::plugin::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        let message: String = message.chars().take(2_000).collect();
        match level {
            Level::Debug => tracing::debug!(plugin = %self.plugin, "{message}"),
            Level::Info => tracing::info!(plugin = %self.plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin = %self.plugin, "{message}"),
            Level::Error => tracing::error!(plugin = %self.plugin, "{message}"),
        }
        if self.logs.len() < 100 {
            self.logs.push((level, message));
        }
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        if !self.capabilities.contains(&Capability::StoreState) {
            return None;
        }
        self.kv.get(&key).cloned()
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if !self.capabilities.contains(&Capability::StoreState) {
            return Err("the manifest does not ask for store-state".into());
        }
        if key.len() > KV_KEY_BYTES_MAX || value.len() > KV_VALUE_BYTES_MAX {
            return Err(format!(
                "keys are at most {KV_KEY_BYTES_MAX} bytes and values {KV_VALUE_BYTES_MAX}"
            ));
        }
        if !self.kv.contains_key(&key) && self.kv.len() >= self.kv_keys_max {
            return Err(format!("the store holds at most {} keys", self.kv_keys_max));
        }
        self.kv.insert(key, value);
        Ok(())
    }

    fn kv_delete(&mut self, key: String) {
        self.kv.remove(&key);
    }

    fn random_u64(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl multistream::plugin::types::Host for State {}

/// The node's plugin engine.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
    stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Makes the engine; compiled code is cached in `cache_dir` when given.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(INSTANCES_MAX)
            .total_core_instances(INSTANCES_MAX * 4)
            .total_memories(INSTANCES_MAX * 2)
            .total_tables(INSTANCES_MAX * 4)
            .total_stacks(INSTANCES_MAX)
            .max_memory_size(limits.memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Reserve only what the cap needs, not wasmtime's default of gigabytes per memory.
        config.memory_reservation(limits.memory_bytes as u64);
        if let Some(dir) = cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(wasmtime::Cache::new(cache)?));
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Plugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("plugin-epochs".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })?;
        Ok(Runtime {
            engine,
            linker,
            limits,
            stop,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles (or takes from the cache) a plugin component and reads its manifest.
    pub fn load(&self, wasm: &[u8]) -> anyhow::Result<Code> {
        let component = Component::new(&self.engine, wasm)?;
        let pre = PluginPre::new(self.linker.instantiate_pre(&component)?)?;
        let mut code = Code {
            pre,
            manifest: Manifest {
                name: String::new(),
                version: String::new(),
                title: String::new(),
                subscribes: Vec::new(),
                capabilities: Vec::new(),
            },
        };
        // The manifest comes from a throwaway instance, under the same limits as any call.
        let mut probe = self.instantiate(&code, "(loading)", 0)?;
        let manifest = probe.call(|bindings, store| bindings.call_manifest(store))?;
        check_manifest(&manifest)?;
        code.manifest = manifest;
        Ok(code)
    }

    /// A fresh instance of a plugin for one class. `seed` seeds its random source.
    pub fn instantiate(&self, code: &Code, class: &str, seed: u64) -> anyhow::Result<Instance> {
        let state = State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            plugin: if code.manifest.name.is_empty() {
                class.to_owned()
            } else {
                format!("{}@{}", code.manifest.name, class)
            },
            capabilities: code.manifest.capabilities.clone(),
            kv: HashMap::new(),
            kv_keys_max: self.limits.kv_keys_max,
            random: seed,
            logs: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(deadline_ticks(self.limits.call_deadline));
        let bindings = code.pre.instantiate(&mut store)?;
        Ok(Instance {
            store,
            bindings,
            limits: self.limits,
            capabilities: code.manifest.capabilities.clone(),
            poisoned: false,
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

fn check_manifest(manifest: &Manifest) -> anyhow::Result<()> {
    let name_ok = !manifest.name.is_empty()
        && manifest.name.len() <= 64
        && manifest
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        anyhow::bail!(
            "plugin name {:?} must be 1 to 64 lowercase letters, digits or '-'",
            manifest.name
        );
    }
    if manifest.title.is_empty() || manifest.title.chars().count() > 100 {
        anyhow::bail!("plugin title must be 1 to 100 characters");
    }
    if manifest.subscribes.len() > 32 {
        anyhow::bail!("a plugin subscribes to at most 32 event kinds");
    }
    Ok(())
}

/// A compiled, pre-linked plugin and its manifest.
pub struct Code {
    pre: PluginPre<State>,
    pub manifest: Manifest,
}

/// A plugin running for one class.
pub struct Instance {
    store: Store<State>,
    bindings: Plugin,
    limits: Limits,
    capabilities: Vec<Capability>,
    poisoned: bool,
}

impl Instance {
    /// Whether a trap, timeout or memory fault left this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Log lines of the last call.
    pub fn logs(&self) -> &[(Level, String)] {
        &self.store.data().logs
    }

    pub fn on_event(&mut self, event: &Event) -> Result<Vec<Effect>, CallError> {
        self.store.data_mut().random ^= event.seq;
        let answer = self.call(|b, s| b.call_on_event(s, event))?;
        self.checked(answer)
    }

    pub fn on_action(&mut self, action: &Action) -> Result<Vec<Effect>, CallError> {
        let answer = self.call(|b, s| b.call_on_action(s, action))?;
        self.checked(answer)
    }

    pub fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        self.call(|b, s| b.call_snapshot(s))
    }

    pub fn restore(&mut self, state: &[u8]) -> Result<(), CallError> {
        self.call(|b, s| b.call_restore(s, state))?
            .map_err(CallError::Refused)
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&Plugin, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if self.poisoned {
            return Err(CallError::Trap(
                "the instance failed before and must be rebuilt".into(),
            ));
        }
        self.store.data_mut().logs.clear();
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_deadline));
        let started = Clock::now();
        match f(&self.bindings, &mut self.store) {
            Ok(value) => Ok(value),
            Err(error) => {
                self.poisoned = true;
                let trap = error.downcast_ref::<wasmtime::Trap>().copied();
                Err(match trap {
                    Some(wasmtime::Trap::Interrupt) => CallError::Timeout(started.elapsed()),
                    _ if is_memory_fault(&error) => {
                        CallError::OutOfMemory(self.limits.memory_bytes)
                    }
                    Some(trap) => {
                        tracing::debug!(error = format!("{error:#}"), "plugin trapped");
                        CallError::Trap(format!("{trap} (a panic, or an invalid operation)"))
                    }
                    None => CallError::Trap(
                        format!("{:#}", error.root_cause())
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .chars()
                            .take(500)
                            .collect(),
                    ),
                })
            }
        }
    }

    fn checked(&self, answer: Result<Vec<Effect>, String>) -> Result<Vec<Effect>, CallError> {
        let effects =
            answer.map_err(|message| CallError::Refused(message.chars().take(500).collect()))?;
        if effects.len() > self.limits.effects_max {
            return Err(CallError::InvalidOutput(format!(
                "{} effects in one answer; the limit is {}",
                effects.len(),
                self.limits.effects_max
            )));
        }
        let mut bytes = 0usize;
        for effect in &effects {
            let (needed, size, json) = match effect {
                Effect::Emit(body) => (Capability::EmitEvents, body.len(), Some(body)),
                Effect::Show(view) => (Capability::ShowPanel, view.body.len(), Some(&view.body)),
                Effect::PostChat(text) => (Capability::PostChat, text.len(), None),
            };
            if let Some(json) = json
                && size <= self.limits.output_bytes_max
                && serde_json::from_str::<serde_json::Value>(json).is_err()
            {
                return Err(CallError::InvalidOutput(
                    "an event or view body is not JSON".into(),
                ));
            }
            if !self.capabilities.contains(&needed) {
                return Err(CallError::InvalidOutput(format!(
                    "an effect needs the {needed:?} capability, which the manifest does not ask for"
                )));
            }
            bytes += size;
        }
        if bytes > self.limits.output_bytes_max {
            return Err(CallError::InvalidOutput(format!(
                "{bytes} bytes in one answer; the limit is {}",
                self.limits.output_bytes_max
            )));
        }
        Ok(effects)
    }
}

fn is_memory_fault(error: &wasmtime::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("memory") && (text.contains("grow") || text.contains("limit"))
}
