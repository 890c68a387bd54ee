//! `allama playbook validate | run | test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use allama_engine::{
    Decision, Engine, EngineConfig, MemoryStore, Plan, ResumeScope, RunStatus, RunStore, Update,
};
use allama_executor::{Recording, Registry, Replay, RuntimeExecutor, TapeMode, Tapes};

use crate::local::{Env, LocalPlans};

/// `allama playbook …`
#[derive(clap::Subcommand)]
pub enum PlaybookCommand {
    /// Check playbooks: syntax, references, cycles, expressions, `uses`
    /// against installed packages, `with` against their input schemas. Lists
    /// every error with file, line and column; exits 1 if there is any.
    Validate {
        /// Playbook files (YAML or JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        env: Env,
    },
    /// Run a playbook with a live view of its steps. Exits 0 when it
    /// succeeds, 1 when it fails or is cancelled, 3 when it pauses for an
    /// approval (continue with `allama runs approve RUN STEP`).
    Run(RunArgs),
    /// Replay a playbook's recorded runs without network and check their
    /// outcome, outputs and step statuses. Exits 1 on any difference.
    Test {
        /// The playbook file.
        file: PathBuf,
        /// Recording directories (default: FILE_STEM.test/ beside the file;
        /// a directory whose subdirectories are recordings runs each).
        #[arg(long = "recording")]
        recordings: Vec<PathBuf>,
        #[command(flatten)]
        env: Env,
    },
}

/// Arguments of `allama playbook run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The playbook file.
    file: PathBuf,
    /// The trigger event (JSON file); default `{}`.
    #[arg(long)]
    event: Option<PathBuf>,
    /// Inputs as a JSON object, or @FILE.
    #[arg(long)]
    inputs: Option<String>,
    /// Record every capability exchange, the event and the outcome into this
    /// directory, for `allama playbook test`. Secrets appear as names only.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Decide an approval step as soon as it is requested: STEP=approve or
    /// STEP=reject (repeatable; recorded with --record). STEP may be a step
    /// of a child playbook the run starts.
    #[arg(long = "decide", value_name = "STEP=approve|reject")]
    decide: Vec<String>,
    /// Start this many runs of the playbook at once (load and crash tests).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Print less: only the final status line per run.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    env: Env,
}

/// What a recording directory holds besides the tapes.
#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Expected {
    /// `succeeded`, `failed` or `cancelled`.
    status: String,
    /// The run's outputs when it succeeded.
    #[serde(default)]
    outputs: Value,
    /// Step id → final status.
    steps: BTreeMap<String, String>,
    /// Approval decisions to give when asked.
    #[serde(default)]
    decisions: BTreeMap<String, String>,
    /// The run's inputs.
    #[serde(default)]
    inputs: Value,
    /// Attempts (tape keys) the step's timeout stopped while recording.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    cut_off: BTreeSet<String>,
}

/// Entry point.
pub fn main(cmd: PlaybookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PlaybookCommand::Validate { files, env } => validate(&files, &env),
        PlaybookCommand::Run(args) => run(args),
        PlaybookCommand::Test {
            file,
            recordings,
            env,
        } => test(&file, recordings, &env),
    }
}

fn library_dir(env: &Env, file: &Path) -> PathBuf {
    env.playbooks.clone().unwrap_or_else(|| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    })
}

fn add_library(
    registry: &mut Registry,
    store: Arc<dyn RunStore>,
    dir: &Path,
) -> anyhow::Result<LocalPlans> {
    let plans = LocalPlans::load(store, Some(dir))?;
    for (id, info) in plans.infos() {
        registry.add_playbook(&id, info);
    }
    Ok(plans)
}

fn validate(files: &[PathBuf], env: &Env) -> anyhow::Result<ExitCode> {
    let mut registry = env.registry(None)?;
    let check_uses = env.has_packages();
    let mut failed = false;
    for file in files {
        let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
        add_library(&mut registry, store, &library_dir(env, file))?;
        let catalog: Option<&dyn allama_playbook::Catalog> =
            if check_uses { Some(&registry) } else { None };
        match crate::local::read_playbook(file, catalog) {
            Ok((pb, _)) => println!("{}: ok ({} steps)", file.display(), pb.steps.len()),
            Err(e) => {
                failed = true;
                println!("{e:#}");
            }
        }
    }
    if !check_uses {
        eprintln!(
            "(no packages directory: `uses` and `with` were not checked against packages; give --packages)"
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_json(path: &Path, what: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{what}: reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{what}: {} is not valid JSON", path.display()))
}

fn parse_decisions(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for d in list {
        match d.split_once('=') {
            Some((step, v @ ("approve" | "reject"))) => {
                out.insert(step.to_string(), v.to_string());
            }
            _ => bail!("--decide `{d}` must be STEP=approve or STEP=reject"),
        }
    }
    Ok(out)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let trigger = match &args.event {
        Some(p) => read_json(p, "--event")?,
        None => Value::Object(Default::default()),
    };
    let inputs = match &args.inputs {
        Some(s) => match s.strip_prefix('@') {
            Some(path) => read_json(Path::new(path), "--inputs")?,
            None => serde_json::from_str(s).context("--inputs is not valid JSON")?,
        },
        None => Value::Null,
    };
    let decisions = parse_decisions(&args.decide)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = args.env.open_store()?;
    let runtime = crate::local::runtime(&args.env)?;
    let mut registry = args.env.registry(Some(&runtime))?;
    let plans = add_library(
        &mut registry,
        store.clone(),
        &library_dir(&args.env, &args.file),
    )?;
    let (pb, source) = crate::local::read_playbook(&args.file, Some(&registry))?;
    let plan = Plan::new(pb, &source);
    plans.remember(&plan, &source)?;
    let tapes = args
        .record
        .as_ref()
        .map(|_| Arc::new(Mutex::new(Recording::default())));
    let mode = match &tapes {
        Some(t) => TapeMode::Record(t.clone()),
        None => TapeMode::Off,
    };
    let executor = RuntimeExecutor::new(Arc::new(registry), mode);
    let plans = Arc::new(plans);
    let result = rt.block_on(async {
        let engine = Engine::start(
            store.clone(),
            Arc::new(executor),
            plans.clone(),
            EngineConfig {
                resume: ResumeScope::None,
                ..EngineConfig::default()
            },
        )
        .await?;
        let view = LiveView::new(args.quiet);
        let updates = engine.subscribe();
        let mut ids = Vec::new();
        for _ in 0..args.count.max(1) {
            ids.push(
                engine
                    .start_run(plan.clone(), trigger.clone(), inputs.clone())
                    .await?,
            );
        }
        let outcome = drive(
            &engine,
            store.as_ref(),
            plans.as_ref(),
            &ids,
            updates,
            &view,
            &decisions,
        )
        .await;
        engine.shutdown().await;
        outcome
    })?;
    if let (Some(dir), Some(tapes)) = (&args.record, tapes) {
        let (status, outputs, steps) = &result[0];
        let recording = std::mem::take(&mut *tapes.lock().unwrap_or_else(|e| e.into_inner()));
        let expected = Expected {
            status: status.clone(),
            outputs: outputs.clone(),
            steps: steps.clone(),
            decisions,
            inputs,
            cut_off: recording.cut_off,
        };
        write_recording(dir, &trigger, &expected, &recording.tapes)?;
        println!("recorded to {}", dir.display());
    }
    let worst = result.iter().map(|(s, _, _)| exit_of(s)).max().unwrap_or(0);
    Ok(ExitCode::from(worst))
}

fn exit_of(status: &str) -> u8 {
    match status {
        "succeeded" => 0,
        "paused" => 3,
        _ => 1,
    }
}

fn write_recording(
    dir: &Path,
    trigger: &Value,
    expected: &Expected,
    tapes: &Tapes,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text + "\n").with_context(|| format!("writing {}", p.display()))
    };
    write("event.json", serde_json::to_string_pretty(trigger)?)?;
    write("expected.json", serde_json::to_string_pretty(expected)?)?;
    write("tapes.json", serde_json::to_string_pretty(tapes)?)?;
    Ok(())
}

/// Prints steps as they start and finish.
struct LiveView {
    quiet: bool,
    started: Instant,
}

impl LiveView {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            started: Instant::now(),
        }
    }

    fn show(&self, u: &Update) {
        if self.quiet {
            return;
        }
        let t = self.started.elapsed().as_secs_f64() * 1000.0;
        match u {
            Update::TaskStarted {
                run,
                step,
                item,
                attempt,
            } => {
                let retry = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                println!("{t:>9.1} ms  {run}  ▸ {}{retry}", label(step, *item));
            }
            Update::TaskFinished {
                run,
                step,
                item,
                result,
                duration,
                ..
            } => {
                let d = duration.as_secs_f64() * 1000.0;
                match result {
                    Ok(v) => println!(
                        "{t:>9.1} ms  {run}  ✓ {} {d:.1} ms  {}",
                        label(step, *item),
                        clip(&v.to_string())
                    ),
                    Err(f) => println!(
                        "{t:>9.1} ms  {run}  ✗ {} {d:.1} ms  {}: {}",
                        label(step, *item),
                        f.code,
                        clip(&f.message)
                    ),
                }
            }
            Update::ApprovalRequested(r) => println!(
                "{t:>9.1} ms  {}  ⏸ {} waits for approval by roles [{}] users [{}]: {}",
                r.run,
                r.step,
                r.roles.join(", "),
                r.users.join(", "),
                clip(&r.message)
            ),
            Update::RunStarted { .. } | Update::RunFinished { .. } => {}
        }
    }
}

fn label(step: &str, item: Option<u32>) -> String {
    match item {
        Some(i) => format!("{step}[{i}]"),
        None => step.to_string(),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 100;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

type RunResult = (String, Value, BTreeMap<String, String>);

/// Runs until every run in `ids` has finished or is paused on an approval
/// nobody here will decide; prints the live view and each run's end.
async fn drive(
    engine: &Engine,
    store: &dyn RunStore,
    plans: &dyn allama_engine::Plans,
    ids: &[String],
    mut updates: tokio::sync::broadcast::Receiver<Update>,
    view: &LiveView,
    decisions: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<RunResult>> {
    let mut results: BTreeMap<String, RunResult> = BTreeMap::new();
    let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    loop {
        for id in ids {
            if results.contains_key(id) {
                continue;
            }
            match engine.inspect(id).await? {
                None => {
                    let done = engine.wait(id).await?;
                    let steps = step_statuses(store, plans, id);
                    let status = done.status.as_str().to_string();
                    let outputs = done.output.map(|v| (*v).clone()).unwrap_or(Value::Null);
                    report_end(id, &done.status, &outputs, view.started);
                    results.insert(id.clone(), (status, outputs, steps));
                }
                Some(v) => {
                    for a in &v.awaiting {
                        if let Some(d) = decisions.get(&a.step) {
                            let decision = if d == "approve" {
                                Decision::Approve
                            } else {
                                Decision::Reject
                            };
                            let mut roles = a.roles.clone();
                            roles.extend(a.users.clone());
                            let who = a.users.first().cloned().unwrap_or_else(|| user.clone());
                            engine
                                .decide(
                                    &a.run,
                                    &a.step,
                                    decision,
                                    &who,
                                    &roles,
                                    Some("--decide".into()),
                                )
                                .await?;
                        }
                    }
                    let undecided = v.awaiting.iter().any(|a| !decisions.contains_key(&a.step));
                    if v.active_tasks == 0 && undecided {
                        for a in &v.awaiting {
                            let whose = if a.run == *id {
                                String::new()
                            } else {
                                format!(" of child run {}", a.run)
                            };
                            println!(
                                "run {id} is paused: step `{}`{whose} waits for approval; continue with `allama runs approve {} {}` (or `runs reject`)",
                                a.step, a.run, a.step
                            );
                        }
                        results.insert(id.clone(), ("paused".into(), Value::Null, BTreeMap::new()));
                    }
                }
            }
        }
        if results.len() == ids.len() {
            break;
        }
        // Wait for something to happen.
        match tokio::time::timeout(std::time::Duration::from_millis(200), updates.recv()).await {
            Ok(Ok(u)) => view.show(&u),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) => break,
            Err(_) => {}
        }
        while let Ok(u) = updates.try_recv() {
            view.show(&u);
        }
    }
    Ok(ids.iter().filter_map(|id| results.remove(id)).collect())
}

/// Final step statuses, read back from the run's history.
pub fn step_statuses(
    store: &dyn RunStore,
    plans: &dyn allama_engine::Plans,
    run: &str,
) -> BTreeMap<String, String> {
    match allama_engine::history::rebuild(store, plans, run) {
        Ok((r, _)) => r
            .steps()
            .map(|(id, s)| (id.to_string(), s.status().as_str().to_string()))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

fn report_end(id: &str, status: &RunStatus, outputs: &Value, started: Instant) {
    let t = started.elapsed().as_secs_f64() * 1000.0;
    match status {
        RunStatus::Succeeded => {
            println!("run {id} succeeded in {t:.1} ms");
            if !outputs.is_null() && outputs != &Value::Object(Default::default()) {
                println!(
                    "outputs: {}",
                    serde_json::to_string_pretty(outputs).unwrap_or_default()
                );
            }
        }
        RunStatus::Failed(f) => println!("run {id} failed after {t:.1} ms: {}", f.message),
        RunStatus::Cancelled => println!("run {id} was cancelled"),
        RunStatus::Running => println!(
            "run {id} stopped after {t:.1} ms: the data store failed (see the log); it is unfinished and resumes with `allama runs resume`"
        ),
    }
}

/// Recording directories for `playbook test`.
fn cases(file: &Path, given: Vec<PathBuf>) -> anyhow::Result<Vec<PathBuf>> {
    let roots = if given.is_empty() {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        vec![file.with_file_name(format!("{stem}.test"))]
    } else {
        given
    };
    let mut out = Vec::new();
    for r in roots {
        if r.join("expected.json").is_file() {
            out.push(r);
            continue;
        }
        let entries = std::fs::read_dir(&r).with_context(|| {
            format!(
                "no recordings at {} (record one with `allama playbook run FILE --record DIR`)",
                r.display()
            )
        })?;
        let mut subs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("expected.json").is_file())
            .collect();
        subs.sort();
        if subs.is_empty() {
            bail!(
                "{} holds no recordings (directories with expected.json)",
                r.display()
            );
        }
        out.extend(subs);
    }
    Ok(out)
}

fn test(file: &Path, recordings: Vec<PathBuf>, env: &Env) -> anyhow::Result<ExitCode> {
    let cases = cases(file, recordings)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runtime = crate::local::runtime(env)?;
    let registry = Arc::new({
        let mut r = env.registry(Some(&runtime))?;
        let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
        add_library(&mut r, store, &library_dir(env, file))?;
        r
    });
    let (pb, source) = crate::local::read_playbook(file, Some(registry.as_ref()))?;
    let mut failures = 0;
    for case in &cases {
        let name = case.display().to_string();
        let problems = rt.block_on(run_case(file, case, &pb, &source, registry.clone(), env))?;
        if problems.is_empty() {
            println!("ok    {name}");
        } else {
            failures += 1;
            println!("FAIL  {name}");
            for p in problems {
                println!("      {p}");
            }
        }
    }
    println!("{} recording(s), {failures} failed", cases.len());
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run_case(
    file: &Path,
    case: &Path,
    pb: &allama_playbook::Playbook,
    source: &str,
    registry: Arc<Registry>,
    env: &Env,
) -> anyhow::Result<Vec<String>> {
    let trigger = read_json(&case.join("event.json"), "recording")?;
    let expected: Expected =
        serde_json::from_value(read_json(&case.join("expected.json"), "recording")?)
            .with_context(|| format!("{}: expected.json", case.display()))?;
    let tapes_text = std::fs::read_to_string(case.join("tapes.json"))
        .with_context(|| format!("{}: reading tapes.json", case.display()))?;
    let raw: BTreeMap<String, Value> = serde_json::from_str(&tapes_text)
        .with_context(|| format!("{}: tapes.json is not a map of attempts", case.display()))?;
    let mut tapes = Tapes::new();
    for (k, v) in raw {
        let ex = allama_runtime::tape::from_json(&v.to_string())
            .with_context(|| format!("{}: tapes.json: `{k}`", case.display()))?;
        tapes.insert(k, ex);
    }
    let replay = Arc::new(Replay::new(tapes, expected.cut_off.clone()));
    let store: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    let plans = LocalPlans::load(store.clone(), Some(&library_dir(env, file)))?;
    let plan = Plan::new(pb.clone(), source);
    plans.remember(&plan, source)?;
    let executor = RuntimeExecutor::new(registry, TapeMode::Replay(replay.clone()));
    let plans = Arc::new(plans);
    let engine = Engine::start(
        store.clone(),
        Arc::new(executor),
        plans.clone(),
        EngineConfig::default(),
    )
    .await?;
    let view = LiveView::new(true);
    let updates = engine.subscribe();
    let inputs = if expected.inputs.is_null() {
        Value::Null
    } else {
        expected.inputs.clone()
    };
    let id = engine.start_run(plan, trigger, inputs).await?;
    let mut got = drive(
        &engine,
        store.as_ref(),
        plans.as_ref(),
        std::slice::from_ref(&id),
        updates,
        &view,
        &expected.decisions,
    )
    .await?;
    engine.shutdown().await;
    let (status, outputs, steps) = got.pop().unwrap_or_default();
    let mut problems = replay.problems();
    if status != expected.status {
        problems.push(format!(
            "status: expected {}, got {status}",
            expected.status
        ));
    }
    if outputs != expected.outputs {
        problems.push(format!(
            "outputs: expected {}, got {}",
            clip(&expected.outputs.to_string()),
            clip(&outputs.to_string())
        ));
    }
    for (step, want) in &expected.steps {
        match steps.get(step) {
            Some(s) if s == want => {}
            other => problems.push(format!(
                "step `{step}`: expected {want}, got {}",
                other.map_or("nothing", |s| s.as_str())
            )),
        }
    }
    Ok(problems)
}

/// [`drive`] with its own live view, for the `runs` commands.
pub async fn drive_runs(
    engine: &Engine,
    store: &dyn RunStore,
    plans: &dyn allama_engine::Plans,
    ids: &[String],
    updates: tokio::sync::broadcast::Receiver<Update>,
    quiet: bool,
    decisions: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<RunResult>> {
    let view = LiveView::new(quiet);
    drive(engine, store, plans, ids, updates, &view, decisions).await
}
