//! One target's fuzzing loop, in the worker process: run the seeds, then mutate inputs of the
//! corpus and run them inside `catch_unwind`, keeping an input when it produces an outcome kind
//! not seen before; save and minimise every input that panics. Also `--replay` of one input.
//!
//! The worker reports on stdout, one line each: `progress EXECS` (a heartbeat, at least every
//! quarter second while inputs complete), `panic {json}` and, at the end, `summary {json}`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::input::Input;
use crate::mutate::{mutate, Dictionary};
use crate::rng::{fnv1a, Rng};
use crate::targets::{normalise, Target};

/// Most inputs kept per target; beyond it a new one replaces a random non-seed one.
const MAX_CORPUS: usize = 4096;
/// Distinct kinds of one message stem that add their inputs to the corpus.
const MAX_KINDS_PER_STEM: usize = 32;
/// Distinct panics (by location and message kind) saved and minimised per target.
const MAX_SAVED_PANICS: usize = 20;
/// Time spent minimising one panicking input.
const MINIMISE_BUDGET: Duration = Duration::from_secs(10);
/// An input slower than this is saved (`<target>-slow.input`) and reported.
const SLOW: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_millis(250);

/// A panic caught by the hook: its message and where it was raised.
#[derive(Debug, Clone)]
pub struct Caught {
    pub message: String,
    pub location: String,
}

static LAST_PANIC: Mutex<Option<Caught>> = Mutex::new(None);

/// Replaces the panic hook by one that prints nothing and records the message and location
/// for [`execute`]: a fuzzing run panics many times on purpose.
pub fn install_quiet_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Caught { message, location });
    }));
}

/// Runs `target` on `input`: its outcome kind, or the panic it raised.
pub fn execute(target: &dyn Target, input: &Input) -> Result<String, Caught> {
    catch_unwind(AssertUnwindSafe(|| target.run(input))).map_err(|_| {
        LAST_PANIC
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or(Caught {
                message: "(a panic the hook did not see)".into(),
                location: String::new(),
            })
    })
}

/// What tells two panics apart: where, and the message with its numbers and quoted values out.
fn signature(caught: &Caught) -> String {
    let message: String = normalise(&caught.message).chars().take(60).collect();
    format!("{} {message}", caught.location)
}

/// A kind without what it quotes: `rule "x" field `when`: ...` -> `rule "" field ``: ...`.
fn stem(kind: &str) -> String {
    let mut stem = String::new();
    let mut open: Option<char> = None;
    for c in kind.chars() {
        match open {
            Some(quote) if c == quote => {
                open = None;
                stem.push(c);
            }
            Some(_) => {}
            None => {
                if matches!(c, '"' | '`') {
                    open = Some(c);
                }
                stem.push(c);
            }
        }
    }
    stem
}

/// The worker's settings.
pub struct Options {
    pub seed: u64,
    pub seconds: f64,
    pub max_execs: Option<u64>,
    pub out: PathBuf,
    /// Save each input from this execution on before running it (to find the one that kills
    /// the process).
    pub save_from: Option<u64>,
}

/// The path an input of `target` is saved to (`<out>/<target>-<what>.input`).
pub fn input_path(out: &Path, target: &str, what: &str) -> PathBuf {
    out.join(format!("{target}-{what}.input"))
}

fn save(path: &Path, target: &str, input: &Input) -> String {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(path, input.to_file(target)) {
        Ok(()) => path.display().to_string(),
        Err(error) => format!("(not saved to {}: {error})", path.display()),
    }
}

/// Prints one report line. A worker whose supervisor is gone (stdout closed) stops.
fn emit(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(3);
    }
}

struct Fuzzer<'a> {
    target: &'a dyn Target,
    options: &'a Options,
    rng: Rng,
    corpus: Vec<Input>,
    seeds: usize,
    kinds: BTreeMap<String, u64>,
    /// Distinct kinds by message stem (the kind without what it quotes).
    stems: BTreeMap<String, usize>,
    /// Panics by signature: how many times, and the first execution.
    panics: BTreeMap<String, (u64, u64)>,
    panic_count: u64,
    execs: u64,
    slowest: Duration,
    last_heartbeat: Instant,
}

impl Fuzzer<'_> {
    fn heartbeat(&mut self) {
        if self.last_heartbeat.elapsed() >= HEARTBEAT {
            self.last_heartbeat = Instant::now();
            emit(&format!("progress {}", self.execs));
        }
    }

    /// Runs one input; keeps it if `keep` or if its outcome is new.
    fn step(&mut self, input: Input, keep: bool) {
        let name = self.target.name();
        if self
            .options
            .save_from
            .is_some_and(|from| self.execs >= from)
        {
            save(
                &input_path(&self.options.out, name, "current"),
                name,
                &input,
            );
        }
        let started = Instant::now();
        let result = execute(self.target, &input);
        let took = started.elapsed();
        let exec = self.execs;
        self.execs += 1;
        if took > self.slowest {
            self.slowest = took;
            if took >= SLOW {
                let path = save(&input_path(&self.options.out, name, "slow"), name, &input);
                emit(&format!(
                    "slow {}",
                    json!({"target": name, "exec": exec, "ms": took.as_millis() as u64, "input": path})
                ));
            }
        }
        match result {
            Ok(kind) => {
                // However many kinds one stem shows (when the normalisation misses some of the
                // input's text), a few inputs represent it.
                let stem = stem(&kind);
                let count = self.kinds.entry(kind).or_insert(0);
                *count += 1;
                let new = *count == 1;
                let stem_kinds = self.stems.entry(stem).or_insert(0);
                if new {
                    *stem_kinds += 1;
                }
                if keep || (new && *stem_kinds <= MAX_KINDS_PER_STEM) {
                    self.keep(input);
                }
            }
            Err(caught) => self.on_panic(input, caught, exec),
        }
        self.heartbeat();
    }

    fn keep(&mut self, input: Input) {
        if self.corpus.len() < MAX_CORPUS {
            self.corpus.push(input);
        } else {
            let replaced = self.seeds + self.rng.below(self.corpus.len() - self.seeds);
            if let Some(slot) = self.corpus.get_mut(replaced) {
                *slot = input;
            }
        }
    }

    fn on_panic(&mut self, input: Input, caught: Caught, exec: u64) {
        self.panic_count += 1;
        let signature = signature(&caught);
        let known = self.panics.len();
        let entry = self.panics.entry(signature.clone()).or_insert((0, exec));
        entry.0 += 1;
        if entry.0 > 1 || known >= MAX_SAVED_PANICS {
            return;
        }
        let name = self.target.name();
        let what = format!("panic-{known}-seed{}-exec{exec}", self.options.seed);
        let path = save(&input_path(&self.options.out, name, &what), name, &input);
        let minimised = self.minimise(&input, &signature);
        let minimised_path = save(
            &input_path(&self.options.out, name, &format!("{what}-min")),
            name,
            &minimised,
        );
        let message: String = caught.message.chars().take(4000).collect();
        emit(&format!(
            "panic {}",
            json!({
                "target": name,
                "seed": self.options.seed,
                "exec": exec,
                "message": message,
                "location": caught.location,
                "input": path,
                "minimised": minimised_path,
                "minimised_bytes": minimised.len(),
            })
        ));
    }

    /// A smaller input with the same panic: chunks of each part deleted while it still panics
    /// the same way, halving the chunk size, within [`MINIMISE_BUDGET`].
    fn minimise(&mut self, input: &Input, signature_wanted: &str) -> Input {
        let started = Instant::now();
        let mut best = input.clone();
        let target = self.target;
        let still_panics = |candidate: &Input| -> bool {
            matches!(execute(target, candidate), Err(caught) if signature(&caught) == signature_wanted)
        };
        // Whole parts first (a registry's unrelated files).
        let mut index = 0;
        while index < best.parts.len() && best.parts.len() > 1 {
            let mut candidate = best.clone();
            candidate.parts.remove(index);
            if still_panics(&candidate) {
                best = candidate;
            } else {
                index += 1;
            }
        }
        for part in 0..best.parts.len() {
            let mut chunk = best.parts[part].bytes.len() / 2;
            while chunk >= 1 {
                let mut start = 0;
                while start < best.parts[part].bytes.len() {
                    if started.elapsed() > MINIMISE_BUDGET {
                        return best;
                    }
                    let mut candidate = best.clone();
                    let bytes = &mut candidate.parts[part].bytes;
                    let end = (start + chunk).min(bytes.len());
                    bytes.drain(start..end);
                    if still_panics(&candidate) {
                        best = candidate;
                    } else {
                        start += chunk;
                    }
                    if self.last_heartbeat.elapsed() >= HEARTBEAT {
                        self.last_heartbeat = Instant::now();
                        emit(&format!("progress {}", self.execs));
                    }
                }
                chunk /= 2;
            }
        }
        best
    }
}

/// Fuzzes `target` for `options.seconds` (or `max_execs` executions); prints the lines this
/// module's doc describes and returns the summary.
pub fn fuzz(target: &dyn Target, options: &Options) -> Value {
    install_quiet_hook();
    let started = Instant::now();
    let seeds = target.seeds();
    let dictionary: Dictionary = target.dictionary(&seeds);
    crate::targets::set_vocabulary(&seeds, &dictionary);
    let mut fuzzer = Fuzzer {
        target,
        options,
        rng: Rng::new(options.seed ^ fnv1a(target.name().as_bytes())),
        corpus: Vec::new(),
        seeds: 0,
        kinds: BTreeMap::new(),
        stems: BTreeMap::new(),
        panics: BTreeMap::new(),
        panic_count: 0,
        execs: 0,
        slowest: Duration::ZERO,
        last_heartbeat: Instant::now(),
    };
    let seed_count = seeds.len();
    for seed in seeds {
        fuzzer.step(seed, true);
    }
    fuzzer.seeds = fuzzer.corpus.len();
    let deadline = started + Duration::from_secs_f64(options.seconds.max(0.0));
    let max_execs = options.max_execs.unwrap_or(u64::MAX);
    while Instant::now() < deadline && fuzzer.execs < max_execs && !fuzzer.corpus.is_empty() {
        // Seeds are valid inputs: a quarter of the time start from one, so that mutations
        // also reach the checks behind the syntax.
        let parent = if fuzzer.rng.one_in(4) {
            fuzzer.rng.below(fuzzer.seeds.max(1))
        } else {
            fuzzer.rng.below(fuzzer.corpus.len())
        };
        let mut input = fuzzer.corpus[parent].clone();
        if fuzzer.rng.one_in(8) {
            target.mutate_parts(&mut fuzzer.rng, &mut input, &fuzzer.corpus);
        }
        mutate(
            &mut fuzzer.rng,
            &mut input,
            &fuzzer.corpus,
            &dictionary,
            &|part| target.weight(part),
            &|part| target.binary(part),
        );
        fuzzer.step(input, false);
    }
    if options.save_from.is_some() {
        let _ = std::fs::remove_file(input_path(&options.out, target.name(), "current"));
    }
    let seconds = started.elapsed().as_secs_f64();
    let error_kinds = fuzzer
        .kinds
        .keys()
        .filter(|k| k.starts_with("err:"))
        .count();
    let summary = json!({
        "target": target.name(),
        "seed": options.seed,
        "seeds": seed_count,
        "execs": fuzzer.execs,
        "seconds": seconds,
        "execs_per_second": fuzzer.execs as f64 / seconds.max(1e-9),
        "error_kinds": error_kinds,
        "ok_kinds": fuzzer.kinds.len() - error_kinds,
        "corpus": fuzzer.corpus.len(),
        "panics": fuzzer.panic_count,
        "distinct_panics": fuzzer.panics.len(),
        "slowest_ms": fuzzer.slowest.as_secs_f64() * 1000.0,
    });
    emit(&format!("summary {summary}"));
    summary
}

/// Runs one saved input and says what happened; true if it panicked.
pub fn replay(target: &dyn Target, input: &Input) -> bool {
    install_quiet_hook();
    match execute(target, input) {
        Ok(kind) => {
            println!("replay {}: no panic; outcome {kind}", target.name());
            false
        }
        Err(caught) => {
            println!(
                "replay {}: PANIC at {}: {}",
                target.name(),
                caught.location,
                caught.message
            );
            true
        }
    }
}
