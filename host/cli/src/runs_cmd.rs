//! `allama runs list | show | cancel | approve | reject | stuck | resume`,
//! on the local data directory.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::Value;

use allama_engine::{
    Decision, Engine, EngineConfig, Event, Millis, ResumeScope, RunStore, StepStatus,
    driver::now_ms,
};
use allama_executor::{RuntimeExecutor, TapeMode};

use crate::local::{Env, LocalPlans};

/// `allama runs …`
#[derive(clap::Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only runs with this status (running, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        env: Env,
    },
    /// A run's timeline: every event with its time, step statuses and skip
    /// reasons, outputs and errors.
    Show {
        /// The run id.
        run: String,
        /// Print the run as one JSON object: status, step statuses and the
        /// whole history (events with their payloads).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        env: Env,
    },
    /// Cancel a run.
    Cancel {
        /// The run id.
        run: String,
        #[command(flatten)]
        env: Env,
    },
    /// Approve a step waiting for approval, then carry the run on.
    Approve(DecideArgs),
    /// Reject a step waiting for approval, then carry the run on.
    Reject(DecideArgs),
    /// Unfinished runs with no progress past their deadline (a step's
    /// timeout, a retry, an approval deadline).
    Stuck {
        #[command(flatten)]
        env: Env,
    },
    /// Carry on every unfinished run (after a crash or a restart) until each
    /// finishes or waits for a person.
    Resume {
        /// Print less.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        env: Env,
    },
}

/// Arguments of `runs approve|reject`.
#[derive(clap::Args)]
pub struct DecideArgs {
    /// The run id.
    run: String,
    /// The step waiting for approval.
    step: String,
    /// A comment, kept in the history.
    #[arg(long)]
    comment: Option<String>,
    /// Who decides (default: $USER).
    #[arg(long = "as")]
    user: Option<String>,
    /// A role the person holds (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    #[command(flatten)]
    env: Env,
}

/// Entry point.
pub fn main(cmd: RunsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RunsCommand::List {
            limit,
            status,
            json,
            env,
        } => list(&env, limit, status.as_deref(), json),
        RunsCommand::Show { run, json, env } => show(&env, &run, json),
        RunsCommand::Cancel { run, env } => cancel(&env, &run),
        RunsCommand::Approve(a) => decide(a, Decision::Approve),
        RunsCommand::Reject(a) => decide(a, Decision::Reject),
        RunsCommand::Stuck { env } => stuck(&env),
        RunsCommand::Resume { quiet, env } => resume(&env, quiet),
    }
}

fn user_name(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

fn fmt_time(ms: Millis) -> String {
    let secs = (ms / 1000) as i64;
    let (d, s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = d + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

fn list(env: &Env, limit: usize, status: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let store = env.open_store()?;
    let all = store.summaries(if status.is_some() { usize::MAX } else { limit })?;
    if json {
        for s in all
            .iter()
            .filter(|s| status.is_none_or(|st| s.status == st))
            .take(limit)
        {
            println!("{}", serde_json::to_string(s)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<34} {:<24} {:<10} {:<19} {:>10}",
        "RUN", "PLAYBOOK", "STATUS", "STARTED", "DURATION"
    );
    for s in all
        .iter()
        .filter(|s| status.is_none_or(|st| s.status == st))
        .take(limit)
    {
        let dur = s
            .finished_at
            .map(|f| format!("{:.1} s", f.saturating_sub(s.started_at) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<34} {:<24} {:<10} {:<19} {:>10}",
            s.id,
            s.playbook,
            s.status,
            fmt_time(s.started_at),
            dur
        );
        if let Some(e) = &s.error {
            println!("    {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(120).collect::<String>(),
            s.len()
        )
    } else {
        s
    }
}

fn label(step: &str, item: Option<u32>, attempt: u32) -> String {
    match item {
        Some(i) => format!("{step}[{i}]#{attempt}"),
        None => format!("{step}#{attempt}"),
    }
}

fn show(env: &Env, run: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = env.open_store()?;
    let plans = LocalPlans::load(store.clone(), env.playbooks.as_deref())?;
    let (state, events) = allama_engine::history::rebuild(store.as_ref(), &plans, run)
        .with_context(|| format!("run {run}"))?;
    if json {
        let steps: BTreeMap<&str, &str> = state
            .steps()
            .map(|(id, s)| (id, s.status().as_str()))
            .collect();
        let out = serde_json::json!({
            "run": run,
            "playbook": state.plan().id(),
            "status": state.status().as_str(),
            "steps": steps,
            "outputs": state.output().map(|o| (**o).clone()),
            "events": events,
        });
        println!("{}", serde_json::to_string(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let t0 = events.first().map(Event::at).unwrap_or(0);
    println!(
        "run {run}  playbook {}  status {}",
        state.plan().id(),
        state.status().as_str()
    );
    println!("timeline:");
    for e in &events {
        let t = format!("+{:.3} s", e.at().saturating_sub(t0) as f64 / 1000.0);
        let line = match e {
            Event::Started {
                trigger,
                inputs,
                parent,
                ..
            } => {
                let p = parent
                    .as_ref()
                    .map(|p| format!(" (child of {} step {})", p.run, p.step))
                    .unwrap_or_default();
                format!(
                    "started{p}  trigger {}  inputs {}",
                    short(trigger),
                    short(inputs)
                )
            }
            Event::TaskStarted {
                step,
                item,
                attempt,
                input,
                ..
            } => {
                format!(
                    "{} started  input {}",
                    label(step, *item, *attempt),
                    short(input)
                )
            }
            Event::TaskSucceeded {
                step,
                item,
                attempt,
                output,
                duration_us,
                ..
            } => format!(
                "{} succeeded in {:.1} ms  output {}",
                label(step, *item, *attempt),
                *duration_us as f64 / 1000.0,
                short(output)
            ),
            Event::TaskFailed {
                step,
                item,
                attempt,
                failure,
                duration_us,
                ..
            } => format!(
                "{} failed in {:.1} ms  {:?} {}: {}{}",
                label(step, *item, *attempt),
                *duration_us as f64 / 1000.0,
                failure.class,
                failure.code,
                failure.message,
                if failure.retryable {
                    " (retryable)"
                } else {
                    ""
                }
            ),
            Event::TaskInterrupted {
                step,
                item,
                attempt,
                shutdown,
                ..
            } => format!(
                "{} interrupted by {}",
                label(step, *item, *attempt),
                if *shutdown {
                    "a shutdown (runs again; not a crash)"
                } else {
                    "a process crash"
                }
            ),
            Event::TimerFired { timer, .. } => {
                format!("timer {:?} for {}", timer.purpose, timer.step)
            }
            Event::ApprovalDecided {
                step,
                decision,
                by,
                comment,
                ..
            } => format!(
                "{step}: {decision:?} by {by}{}",
                comment
                    .as_ref()
                    .map(|c| format!(" — {c}"))
                    .unwrap_or_default()
            ),
            Event::CancelRequested { by, .. } => format!("cancelled by {by}"),
        };
        println!("  {t:>10}  {line}");
    }
    println!("steps:");
    for (id, s) in state.steps() {
        let detail = match s.status() {
            StepStatus::Skipped(reason) => format!(" ({reason})"),
            StepStatus::Failed => s.error().map(|e| format!(" ({e})")).unwrap_or_default(),
            _ => String::new(),
        };
        println!("  {id:<24} {}{detail}", s.status().as_str());
    }
    for a in state.pending_approvals(now_ms()) {
        println!(
            "waiting: step `{}` for roles [{}] users [{}]: {}",
            a.step,
            a.roles.join(", "),
            a.users.join(", "),
            a.message
        );
    }
    match state.status() {
        allama_engine::RunStatus::Failed(f) => println!("error: {}", f.message),
        allama_engine::RunStatus::Succeeded => {
            if let Some(o) = state.output() {
                println!("outputs: {}", serde_json::to_string_pretty(&**o)?);
            }
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn stuck(env: &Env) -> anyhow::Result<ExitCode> {
    let store = env.open_store()?;
    let plans = LocalPlans::load(store.clone(), env.playbooks.as_deref())?;
    let now = now_ms();
    let mut n = 0;
    for id in store.active()? {
        match allama_engine::history::rebuild(store.as_ref(), &plans, &id) {
            Ok((run, events)) => {
                let last = events.last().map(Event::at).unwrap_or(0);
                if let Some(deadline) = run.deadline()
                    && deadline < now
                {
                    n += 1;
                    println!(
                        "{id}  playbook {}  last progress {}  deadline passed {:.0} s ago",
                        run.plan().id(),
                        fmt_time(last),
                        (now - deadline) as f64 / 1000.0
                    );
                }
            }
            Err(e) => {
                n += 1;
                println!("{id}  cannot be resumed: {e}");
            }
        }
    }
    if n == 0 {
        println!("no stuck runs");
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts an engine that resumes `run`'s whole tree, from the top-level run
/// it belongs to (child run ids are `<root>~…`): a decision or cancel in a
/// child carries its parent on too. Returns the root's id as well.
async fn start_tree(
    env: &Env,
    store: Arc<allama_store::SledStore>,
    run: &str,
) -> anyhow::Result<(Engine, Arc<LocalPlans>, String)> {
    let root = run.split('~').next().unwrap_or(run).to_string();
    let (engine, plans) = start(env, store, ResumeScope::Only(vec![root.clone()])).await?;
    Ok((engine, plans, root))
}

fn decide(a: DecideArgs, decision: Decision) -> anyhow::Result<ExitCode> {
    let env = a.env.clone();
    let run = a.run.clone();
    let user = user_name(a.user.as_deref());
    let roles = a.roles.clone();
    let step = a.step.clone();
    let comment = a.comment.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = env.open_store()?;
    let (engine, plans, root) = rt.block_on(start_tree(&env, store.clone(), &run))?;
    rt.block_on(async {
        engine
            .decide(&run, &step, decision, &user, &roles, comment)
            .await
            .with_context(|| format!("run {run} step {step}"))
    })?;
    println!(
        "{run}: step `{step}` {}",
        if decision == Decision::Approve {
            "approved"
        } else {
            "rejected"
        }
    );
    finish(
        &rt,
        &engine,
        store.as_ref(),
        plans.as_ref(),
        vec![root],
        false,
    )
}

/// Cancels a run and its child runs. The cancel is written to the stored
/// histories before anything resumes, so an attempt a crash cut short is
/// not dispatched again only to be cancelled; then the run's tree resumes
/// (a cancelled child's parent carries on) until it finishes or waits.
fn cancel(env: &Env, run: &str) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = env.open_store()?;
    let Some(summary) = store.summary(run)? else {
        bail!("no run {run}");
    };
    let plans = LocalPlans::load(store.clone(), env.playbooks.as_deref())?;
    let cancelled = rt
        .block_on(allama_engine::history::cancel_stored(
            store.as_ref(),
            &plans,
            run,
            &user_name(None),
        ))
        .with_context(|| format!("run {run}"))?;
    if cancelled.is_empty() {
        bail!("run {run} has already finished ({})", summary.status);
    }
    for id in &cancelled {
        println!("{id}: cancelled");
    }
    drop(plans);
    let (engine, plans, root) = rt.block_on(start_tree(env, store.clone(), run))?;
    // The cancel has landed; how the tree ends after it is shown, not judged.
    finish(
        &rt,
        &engine,
        store.as_ref(),
        plans.as_ref(),
        vec![root],
        false,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn resume(env: &Env, quiet: bool) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = env.open_store()?;
    let ids: Vec<String> = store
        .active()?
        .into_iter()
        .filter(|id| !id.contains('~'))
        .collect();
    let (engine, plans) = rt.block_on(start(env, store.clone(), ResumeScope::All))?;
    if ids.is_empty() {
        println!("no unfinished runs");
        rt.block_on(engine.shutdown());
        return Ok(ExitCode::SUCCESS);
    }
    finish(&rt, &engine, store.as_ref(), plans.as_ref(), ids, quiet)
}

async fn start(
    env: &Env,
    store: Arc<allama_store::SledStore>,
    scope: ResumeScope,
) -> anyhow::Result<(Engine, Arc<LocalPlans>)> {
    let runtime = crate::local::runtime(env)?;
    let registry = env.registry(Some(&runtime))?;
    let plans = Arc::new(LocalPlans::load(store.clone(), env.playbooks.as_deref())?);
    let executor = RuntimeExecutor::new(Arc::new(registry), TapeMode::Off);
    let engine = Engine::start(
        store,
        Arc::new(executor),
        plans.clone(),
        EngineConfig {
            resume: scope,
            ..EngineConfig::default()
        },
    )
    .await?;
    Ok((engine, plans))
}

fn finish(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    store: &dyn RunStore,
    plans: &dyn allama_engine::Plans,
    ids: Vec<String>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let results = rt.block_on(async {
        let updates = engine.subscribe();
        let r = crate::playbook_cmd::drive_runs(
            engine,
            store,
            plans,
            &ids,
            updates,
            quiet,
            &BTreeMap::new(),
        )
        .await;
        engine.shutdown().await;
        r
    })?;
    let worst = results
        .iter()
        .map(|(s, _, _)| match s.as_str() {
            "succeeded" => 0u8,
            "paused" => 3,
            _ => 1,
        })
        .max()
        .unwrap_or(0);
    Ok(ExitCode::from(worst))
}
