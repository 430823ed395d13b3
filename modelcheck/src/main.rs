//! `rdio-modelcheck`: check the bounded state spaces exhaustively and print
//! what was explored, or serve the stateright explorer.

use rdio_modelcheck::RdioModel;
use rdio_modelcheck::adapter::{SERVER_SLOTS, Submit};
use stateright::{Checker, Expectation, Model};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "\
usage: rdio-modelcheck [--preset NAME] [--requests N] [--kinds K,K,..]
                       [--cancels N] [--grants N] [--revokes N] [--losses N]
                       [--ticks N] [--pairs N] [--credits N] [--max-credits N]
                       [--read-batch 0|1] [--depth N] [--threads N] [--serve [ADDR]]

Checks every state of the rdio client and server cores reachable within the
bounds and prints the unique states explored and each property's result.
Without options: the CI runs (every preset). --preset
requests|pipeline|credits|faults|batches|batch-credits starts from one preset; the other
options change its bounds. --read-batch 1 negotiates read batches;
--pairs N lets the client submit two reads (of the read kinds) N times
before it drains, so that they go as one batch. --kinds picks
the requests from read, read-poll, read-now, read-now-poll, readv, readv-poll,
write, write-poll, write-now, write-now-poll, writev, writev-poll, collapse, collapse-poll, close,
interrupt (or all).
--depth N stops every path at N steps (default: no limit, exhaustive).
--serve starts the stateright explorer on ADDR (default 127.0.0.1:3000)
for the one model selected, instead of checking. See docs/MODEL.md.";

struct Options {
    runs: Vec<(String, RdioModel)>,
    depth: usize,
    threads: usize,
    serve: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let presets = RdioModel::presets();
    let mut selected: Option<(String, RdioModel)> = None;
    let (mut depth, mut threads, mut serve) = (0usize, 1usize, None);
    let mut it = args.iter().peekable();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--serve" => {
                let addr = it.next_if(|v| !v.starts_with("--"));
                serve = Some(addr.cloned().unwrap_or_else(|| "127.0.0.1:3000".into()));
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--preset" {
            let (name, model) = presets
                .iter()
                .find(|(name, _)| name == value)
                .ok_or_else(|| format!("--preset: no preset {value:?}"))?;
            selected = Some((name.to_string(), model.clone()));
            continue;
        }
        let number = || -> Result<usize, String> {
            value
                .parse()
                .map_err(|_| format!("{flag}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--depth" => {
                depth = number()?;
                continue;
            }
            "--threads" => {
                threads = number()?.max(1);
                continue;
            }
            _ => {}
        }
        let (_, model) = selected.get_or_insert_with(|| {
            let (name, model) = &presets[0];
            (name.to_string(), model.clone())
        });
        if flag == "--kinds" {
            model.bounds.kinds = if value == "all" {
                Submit::ALL.to_vec()
            } else {
                value
                    .split(',')
                    .map(|k| Submit::from_name(k).ok_or_else(|| format!("--kinds: no kind {k:?}")))
                    .collect::<Result<_, _>>()?
            };
            continue;
        }
        let n = number()?;
        let small = || u8::try_from(n).map_err(|_| format!("{flag}: {n} is too large"));
        let credits = || u16::try_from(n).map_err(|_| format!("{flag}: {n} is too large"));
        let b = &mut model.bounds;
        match flag.as_str() {
            "--requests" => b.requests = small()?,
            "--cancels" => b.cancels = small()?,
            "--grants" => b.grants = small()?,
            "--revokes" => b.revokes = small()?,
            "--losses" => b.losses = small()?,
            "--ticks" => b.ticks = small()?,
            "--pairs" => b.pairs = small()?,
            "--read-batch" => model.limits.read_batch = n != 0,
            "--credits" => model.limits.initial_credits = credits()?,
            "--max-credits" => model.limits.max_credits = credits()?,
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    let runs: Vec<(String, RdioModel)> = match selected {
        Some(run) => vec![run],
        None => presets
            .into_iter()
            .map(|(name, model)| (name.to_string(), model))
            .collect(),
    };
    for (_, model) in &runs {
        let l = model.limits;
        if l.initial_credits == 0
            || l.initial_credits > l.max_credits
            || usize::from(l.max_credits) > SERVER_SLOTS
        {
            return Err(format!(
                "credits: need 1 <= --credits <= --max-credits <= {SERVER_SLOTS}"
            ));
        }
    }
    if serve.is_some() && runs.len() != 1 {
        return Err("--serve needs one model: add --preset NAME".into());
    }
    Ok(Options {
        runs,
        depth,
        threads,
        serve,
    })
}

/// Check one model; the number of failed properties.
fn check(name: &str, model: RdioModel, depth: usize, threads: usize) -> usize {
    let kinds: Vec<String> = model.bounds.kinds.iter().map(|k| k.name()).collect();
    let b = &model.bounds;
    println!(
        "== {name}: {} credits (max {}){}, {} requests of [{}], {} registration, {} cancel, \
         {} grant, {} revoke, {} loss, {} tick, {} pair",
        model.limits.initial_credits,
        model.limits.max_credits,
        if model.limits.read_batch {
            ", read batches"
        } else {
            ""
        },
        b.requests,
        kinds.join(" "),
        b.registers,
        b.cancels,
        b.grants,
        b.revokes,
        b.losses,
        b.ticks,
        b.pairs
    );
    let properties = model.properties();
    let mut builder = model.checker().threads(threads);
    if depth > 0 {
        builder = builder.target_max_depth(depth);
    }
    let started = Instant::now();
    let checker = builder.spawn_bfs().join();
    println!(
        "   {} unique states explored ({} visited, depth {}) in {:.1} s, {}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64(),
        if depth > 0 {
            format!("paths cut at {depth} steps")
        } else {
            "exhaustive".to_string()
        }
    );
    let mut failed = 0;
    for p in &properties {
        let found = checker.discovery(p.name);
        let ok = match p.expectation {
            Expectation::Always | Expectation::Eventually => found.is_none(),
            Expectation::Sometimes => found.is_some(),
        };
        let kind = format!("{:?}", p.expectation).to_lowercase();
        let verdict = if ok { "ok  " } else { "FAIL" };
        println!("   {verdict} {kind:<10} {}", p.name);
        if ok {
            continue;
        }
        failed += 1;
        match found {
            Some(path) => {
                let actions = path.into_actions();
                println!("        counterexample ({} steps):", actions.len());
                for action in actions {
                    println!("          {action:?}");
                }
            }
            None => println!("        never reached: the bounds make it vacuous"),
        }
    }
    println!(
        "   {} properties checked, {} failed",
        properties.len(),
        failed
    );
    failed
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("rdio-modelcheck: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(addr) = options.serve {
        let Some((name, model)) = options.runs.into_iter().next() else {
            return ExitCode::from(2);
        };
        // stateright panics when it cannot bind: say why instead.
        if let Err(e) = std::net::TcpListener::bind(addr.as_str()) {
            eprintln!("rdio-modelcheck: error: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
        println!("explorer for {name}: http://{addr}/ (Ctrl-C to stop)");
        let mut builder = model.checker().threads(options.threads);
        if options.depth > 0 {
            builder = builder.target_max_depth(options.depth);
        }
        // Serves until the process is stopped.
        builder.serve(addr.as_str());
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let mut failed = 0;
    for (name, model) in options.runs {
        failed += check(&name, model, options.depth, options.threads);
    }
    println!(
        "all runs: {failed} properties failed, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
