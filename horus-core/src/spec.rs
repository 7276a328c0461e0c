//! Stack specs: naming a stack as `"total:stable:mnak(retrans=20ms):pt2pt:frag"`, checking that
//! every layer gets what it needs from below, and building it for a view.
//!
//! A spec lists layers top to bottom, separated by `:`; the transport below is implicit. A
//! layer may take parameters in parentheses, `name(key=value,key=value)`. A component may also
//! name a preset (a named spec, such as `reliable`), which stands for its layers. The empty
//! spec, or the preset `none`, is no layer at all: best-effort multicast.
//!
//! ```
//! use horus_core::{Registry, StackError};
//!
//! let registry = Registry::new(); // only the `none` preset; the layers crate adds its layers
//! assert!(registry.plan("none").unwrap().layer_names().is_empty());
//! let err = registry.plan("total:mnak").unwrap_err();
//! assert!(matches!(err, StackError::UnknownLayer { .. }));
//! assert!(err.to_string().contains("unknown layer `total`"));
//! ```

use std::fmt;
use std::time::Duration;

use crate::ids::{Endpoint, GroupName};
use crate::layer::{Layer, Props};
use crate::level::Level;
use crate::rng::Rng;
use crate::stack::Stack;
use crate::time::Time;
use crate::view_state::ViewState;

/// Makes a layer for a view from its parameters.
pub type BuildFn = fn(&mut Args<'_>, &ViewState) -> Result<Box<dyn Layer>, ParamError>;

/// A layer as the registry knows it: its name in specs, what it needs below, what it gives
/// above, and how to make one.
#[derive(Clone, Copy)]
pub struct LayerInfo {
    pub name: &'static str,
    /// One line: what the layer does.
    pub doc: &'static str,
    pub needs: Props,
    pub gives: Props,
    /// What it does not pass on from below, though it does not break it for itself: a layer
    /// that merges, splits or consumes casts hides stability, whose counts no longer match the
    /// casts the layers above it see.
    pub hides: Props,
    pub build: BuildFn,
}

impl fmt::Debug for LayerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerInfo")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .field("gives", &self.gives)
            .finish()
    }
}

/// A named spec.
#[derive(Clone, Debug)]
pub struct Preset {
    pub name: &'static str,
    pub spec: &'static str,
    pub doc: &'static str,
}

/// The layers and presets a program can name in specs.
#[derive(Clone, Debug)]
pub struct Registry {
    layers: Vec<LayerInfo>,
    presets: Vec<Preset>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// A stack spec that cannot be built. Nothing was built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StackError {
    #[error("bad stack spec `{spec}`: {reason}")]
    Syntax { spec: String, reason: String },
    #[error("unknown layer `{name}`; known layers: {known}; presets: {presets}")]
    UnknownLayer { name: String, known: String, presets: String },
    #[error("layer `{0}` appears twice in the stack; name each layer once")]
    Duplicate(String),
    #[error("layer `{layer}` needs {need} below it, and no layer below gives it; add {providers} under `{layer}`")]
    Missing { layer: String, need: String, providers: String },
    #[error("layer `{layer}` needs {need}, which `{provider}` gives, but `{provider}` is above `{layer}`; move `{provider}` below `{layer}`")]
    Misplaced { layer: String, need: String, provider: String },
    #[error("layer `{layer}` needs {need}, but `{hider}` between them hides it; put `{layer}` below `{hider}`")]
    Hidden { layer: String, need: String, hider: String },
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("{endpoint} is not a member of the view it was to run in")]
    NotMember { endpoint: Endpoint },
}

/// A layer parameter with a bad name or value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("layer `{layer}`, parameter `{key}`: {reason}")]
pub struct ParamError {
    pub layer: &'static str,
    pub key: String,
    pub reason: String,
}

/// A checked spec, ready to be built for any view.
#[derive(Clone, Debug)]
pub struct StackPlan {
    pub(crate) layers: Vec<(LayerInfo, Vec<(String, String)>)>,
    gives: Props,
}

impl Registry {
    /// A registry with no layers and the preset `none`.
    pub fn new() -> Self {
        Registry {
            layers: Vec::new(),
            presets: vec![Preset {
                name: "none",
                spec: "",
                doc: "no layer at all: best-effort multicast, unordered and lossy",
            }],
        }
    }

    /// Adds a layer (replacing one of the same name).
    pub fn add_layer(&mut self, info: LayerInfo) -> &mut Self {
        self.layers.retain(|l| l.name != info.name);
        self.layers.push(info);
        self
    }

    /// Adds a preset (replacing one of the same name).
    pub fn add_preset(
        &mut self,
        name: &'static str,
        spec: &'static str,
        doc: &'static str,
    ) -> &mut Self {
        self.presets.retain(|p| p.name != name);
        self.presets.push(Preset { name, spec, doc });
        self
    }

    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    pub fn presets(&self) -> &[Preset] {
        &self.presets
    }

    pub fn layer(&self, name: &str) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.name == name)
    }

    pub fn preset(&self, name: &str) -> Option<&Preset> {
        self.presets.iter().find(|p| p.name == name)
    }

    /// Parses and checks a spec: every name known, no layer twice, every parameter accepted,
    /// and every layer given what it needs by the layers below it.
    pub fn plan(&self, spec: &str) -> Result<StackPlan, StackError> {
        let mut layers = Vec::new();
        self.expand(spec, &mut layers, 0)?;
        for (i, (info, _)) in layers.iter().enumerate() {
            if layers[..i].iter().any(|(l, _)| l.name == info.name) {
                return Err(StackError::Duplicate(info.name.into()));
            }
        }
        // Bottom up: what the layers below each one give.
        let mut below = Props::TRANSPORT;
        for i in (0..layers.len()).rev() {
            let info = &layers[i].0;
            if let Some(need) = info.needs.iter().find(|p| !below.contains(*p)) {
                let given_below = layers[i + 1..].iter().rposition(|(l, _)| l.gives.contains(need));
                let hider = given_below.and_then(|g| {
                    layers[i + 1..i + 1 + g].iter().find(|(l, _)| l.hides.contains(need))
                });
                if let Some((hider, _)) = hider {
                    return Err(StackError::Hidden {
                        layer: info.name.into(),
                        need: need.describe(),
                        hider: hider.name.into(),
                    });
                }
                if let Some((above, _)) = layers[..i].iter().find(|(l, _)| l.gives.contains(need)) {
                    return Err(StackError::Misplaced {
                        layer: info.name.into(),
                        need: need.describe(),
                        provider: above.name.into(),
                    });
                }
                let providers: Vec<String> = self
                    .layers
                    .iter()
                    .filter(|l| l.gives.contains(need))
                    .map(|l| format!("`{}`", l.name))
                    .collect();
                let providers = match providers.len() {
                    0 => "a layer that gives it (none is registered)".to_string(),
                    1 => providers[0].clone(),
                    _ => format!("one of {}", providers.join(", ")),
                };
                return Err(StackError::Missing {
                    layer: info.name.into(),
                    need: need.describe(),
                    providers,
                });
            }
            below = below.without(info.hides) | info.gives;
        }
        // Try each layer's parameters once, on a one-member view, so a bad value is an error
        // now rather than at the first view change.
        let vs = ViewState::singleton(GroupName::new("spec-check"), Endpoint::new(0, 0));
        for (info, params) in &layers {
            let mut args = Args::new(info.name, params);
            (info.build)(&mut args, &vs)?;
            if let Some(key) = args.unused() {
                return Err(ParamError {
                    layer: info.name,
                    key: key.into(),
                    reason: "no such parameter".into(),
                }
                .into());
            }
        }
        Ok(StackPlan { layers, gives: below })
    }

    fn expand(
        &self,
        spec: &str,
        out: &mut Vec<(LayerInfo, Vec<(String, String)>)>,
        depth: usize,
    ) -> Result<(), StackError> {
        let syntax = |reason: String| StackError::Syntax { spec: spec.into(), reason };
        if depth > 4 {
            return Err(syntax("presets nest too deeply".into()));
        }
        let spec_trim = spec.trim();
        if spec_trim.is_empty() {
            return Ok(());
        }
        for (i, part) in split_top(spec_trim).map_err(syntax)?.into_iter().enumerate() {
            let part = part.trim();
            let (name, params) = match part.find('(') {
                None => (part, Vec::new()),
                Some(open) => {
                    let Some(inner) = part[open + 1..].strip_suffix(')') else {
                        return Err(syntax(format!("`{part}`: parameters end with `)`")));
                    };
                    (
                        &part[..open],
                        parse_params(inner).map_err(|r| syntax(format!("`{part}`: {r}")))?,
                    )
                }
            };
            if name.is_empty() {
                return Err(syntax(format!("layer {} has no name (two colons in a row?)", i + 1)));
            }
            if let Some(info) = self.layer(name) {
                out.push((*info, params));
            } else if let Some(preset) = self.preset(name) {
                if !params.is_empty() {
                    return Err(syntax(format!("preset `{name}` takes no parameters")));
                }
                self.expand(preset.spec, out, depth + 1)?;
            } else {
                let mut known: Vec<&str> = self.layers.iter().map(|l| l.name).collect();
                known.sort_unstable();
                let presets: Vec<&str> = self.presets.iter().map(|p| p.name).collect();
                return Err(StackError::UnknownLayer {
                    name: name.into(),
                    known: if known.is_empty() { "none yet".into() } else { known.join(", ") },
                    presets: presets.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Splits on `:` outside parentheses.
fn split_top(spec: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced or nested parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unclosed `(`".into());
    }
    parts.push(&spec[start..]);
    Ok(parts)
}

fn parse_params(inner: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("`{kv}` is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            return Err(format!("`{kv}` is not key=value"));
        }
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(format!("parameter `{k}` given twice"));
        }
        out.push((k.into(), v.into()));
    }
    Ok(out)
}

impl StackPlan {
    /// The layers, top to bottom.
    pub fn layer_names(&self) -> Vec<&'static str> {
        self.layers.iter().map(|(l, _)| l.name).collect()
    }

    /// Everything the stack gives its application (the transport's properties included).
    pub fn gives(&self) -> Props {
        self.gives
    }

    /// The service levels the stack offers, weakest first. Empty for a best-effort stack.
    pub fn levels(&self) -> Vec<Level> {
        let g = self.gives;
        let mut out = Vec::new();
        if g.contains(Props::RELIABLE_CAST) {
            out.push(Level::Fifo);
            for (level, prop) in [
                (Level::Causal, Props::CAUSAL),
                (Level::Total, Props::TOTAL),
                (Level::Safe, Props::SAFE),
            ] {
                if g.contains(prop) {
                    out.push(level);
                }
            }
        }
        out
    }

    /// Gives every `layer` of the plan the parameter `key = value`, unless the spec set it: a
    /// runtime tunes the stack to its transport this way (datagram sizes), while a spec's own
    /// parameters win.
    pub fn with_default_param(mut self, layer: &str, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        for (_, params) in self.layers.iter_mut().filter(|(l, _)| l.name == layer) {
            if !params.iter().any(|(k, _)| k == key) {
                params.push((key.to_owned(), value.clone()));
            }
        }
        self
    }

    /// The value given to parameter `key` of layer `layer`, if the spec gives one.
    pub fn param(&self, layer: &str, key: &str) -> Option<&str> {
        self.layers
            .iter()
            .filter(|(l, _)| l.name == layer)
            .flat_map(|(_, p)| p.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The spec in canonical form (presets expanded, parameters as given).
    pub fn spec(&self) -> String {
        let parts: Vec<String> = self
            .layers
            .iter()
            .map(|(l, p)| {
                if p.is_empty() {
                    l.name.to_string()
                } else {
                    let kv: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{}({})", l.name, kv.join(","))
                }
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(":")
        }
    }

    /// Builds the stack for one view.
    pub fn build(&self, vs: ViewState, rng: Rng, now: Time) -> Result<Stack, StackError> {
        Stack::new(self, vs, rng, now)
    }
}

/// A layer's parameters, as its build function reads them. Each read marks the key used, so
/// a misspelt key is reported.
#[derive(Debug)]
pub struct Args<'a> {
    layer: &'static str,
    entries: &'a [(String, String)],
    used: Vec<bool>,
}

impl<'a> Args<'a> {
    pub fn new(layer: &'static str, entries: &'a [(String, String)]) -> Self {
        Args { layer, entries, used: vec![false; entries.len()] }
    }

    fn raw(&mut self, key: &str) -> Option<&'a str> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// The error for a parameter whose value the layer refuses (out of range, say).
    pub fn error(&self, key: &str, reason: impl Into<String>) -> ParamError {
        ParamError { layer: self.layer, key: key.into(), reason: reason.into() }
    }

    /// The first key no read asked for.
    pub fn unused(&self) -> Option<&str> {
        self.entries.iter().zip(&self.used).find(|(_, u)| !**u).map(|((k, _), _)| k.as_str())
    }

    /// A whole number.
    pub fn u64(&mut self, key: &str, default: u64) -> Result<u64, ParamError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|_| self.error(key, format!("`{v}` is not a whole number")))
            }
        }
    }

    /// A size in bytes: `1400`, `64k`, `64KiB`, `1M`.
    pub fn size(&mut self, key: &str, default: usize) -> Result<usize, ParamError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => parse_size(v).ok_or_else(|| {
                self.error(key, format!("`{v}` is not a size (e.g. 1400, 64k, 1M)"))
            }),
        }
    }

    /// A duration: `500us`, `20ms`, `2s`, `1.5s`.
    pub fn duration(&mut self, key: &str, default: Duration) -> Result<Duration, ParamError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => parse_duration(v).ok_or_else(|| {
                self.error(key, format!("`{v}` is not a duration (e.g. 500us, 20ms, 2s)"))
            }),
        }
    }

    /// `true` or `false`.
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool, ParamError> {
        match self.raw(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(self.error(key, format!("`{v}` is not true or false"))),
        }
    }
}

/// Parses `1400`, `64k`, `64KiB`, `1M`, `1MiB` (binary multiples).
pub fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses `500ns`, `500us`, `20ms`, `2s`, `1.5s`.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        _ => return None,
    };
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}
