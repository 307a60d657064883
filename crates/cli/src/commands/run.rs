//! `xcomponent-ai run FILE... --machine NAME` (or the original's `run FILE MACHINE`): loads the
//! components into one runtime in this process (memory store, manual clock), creates one
//! instance, sends the scripted events in order, prints every runtime event and how each
//! instance ends, then exits.

use anyhow::{Result, anyhow};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use xcomponent_cli::offline::load::{
    LoadError, Loaded, find_machine, load_definitions, print_diagnostics,
};
use xcomponent_cli::offline::report::{final_states_json, final_states_text};
use xcomponent_cli::offline::script::{Item, parse_context_argument, parse_events_argument};
use xcomponent_cli::offline::session::Session;
use xcomponent_cli::offline::trace::Line;
use xcomponent_core::clock::{Clock, SystemClock};
use xcomponent_core::instance::Context;
use xcomponent_runtime::Handlers;

/// Exit status for input that cannot be used (invalid YAML, bad --context or --events).
pub(super) const EXIT_INVALID_INPUT: u8 = 2;

/// Event script format, shared by `run` and `simulate`.
pub(super) const EVENTS_HELP: &str = "\
--events is a JSON array (or @file.json); each item is one step:
  \"SUBMIT\"                                     send SUBMIT to the instance created by --machine
  {\"type\": \"PAY\", \"payload\": {\"amount\": 5}}    the same, with a payload (merged into the data);
                                               a \"timestamp\" key (the original's events carry one)
                                               is accepted and ignored: the clock dates events
  {\"advanceMs\": 60000}                         move the clock; timers that fall due fire in order
  {\"machine\": \"Payment\", \"type\": \"PROCESS\"}    send to the latest live Payment instance
  {\"machine\": \"Payment\", \"where\": {\"orderId\": \"O2\"}, \"type\": \"PROCESS\"}
                                               ... the latest whose data holds these values
  {\"instance\": \"Payment#2\", \"type\": \"PROCESS\"}
                                               send by trace label (or instance id)
  {\"create\": \"Order\", \"context\": {...}}        create another instance
  {\"broadcast\": \"Order\", \"type\": \"PING\", \"state\": \"Pending\"}
                                               send to every Order (in Pending) that the
                                               machine's matching rules for PING select
\"component\" narrows machine/create/broadcast to one component; \"comment\" is ignored anywhere.";

/// The inputs `run` and `simulate` share.
#[derive(Debug, Args)]
pub(super) struct Inputs {
    /// Component files (YAML). Several files are several components in one runtime, so
    /// cross_component transitions and cascading rules between them work. Without --machine,
    /// the last argument names the machine when it is not a file (the original's
    /// `FILE MACHINE`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Machine of the instance to create; events without an address go to it.
    #[arg(long, short = 'm', value_name = "NAME")]
    pub machine: Option<String>,

    /// Component of that machine, when several files declare a machine of that name.
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,

    /// Initial data of the instance: a JSON object, or @file.json.
    #[arg(long, short = 'c', value_name = "JSON")]
    pub context: Option<String>,

    /// Events to process in order: a JSON array, or @file.json (format below).
    #[arg(long, short = 'e', value_name = "JSON")]
    pub events: Option<String>,

    /// After the events, move the clock forward by N milliseconds (due timers fire).
    #[arg(long, value_name = "N")]
    pub advance_ms: Option<u64>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, value_name = "FORMAT")]
    pub output: Output,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What `Inputs` turn into once checked.
pub(super) struct Prepared {
    pub loaded: Loaded,
    pub component: String,
    /// The machine of the first instance (`--machine`, or the original's positional form).
    pub machine: String,
    pub context: Context,
    pub items: Vec<Item>,
}

impl Inputs {
    /// Reads and checks everything; `Err(code)` once the problem has been printed.
    pub(super) fn prepare(&self) -> Result<Prepared, ExitCode> {
        let invalid = |message: String| {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_INVALID_INPUT)
        };
        let context = parse_context_argument(self.context.as_deref())
            .map_err(|error| invalid(format!("{error:#}")))?;
        let items = parse_events_argument(self.events.as_deref())
            .map_err(|error| invalid(format!("{error:#}")))?;
        let (files, machine) = self.files_and_machine().map_err(invalid)?;
        let loaded = match load_definitions(files) {
            Ok(loaded) => loaded,
            Err(LoadError::Invalid(diagnostics)) => {
                print_diagnostics(&diagnostics);
                let errors = diagnostics.iter().filter(|diagnostic| diagnostic.is_error()).count();
                return Err(invalid(format!(
                    "the component files have {errors} error(s); nothing was run"
                )));
            }
            Err(LoadError::Usage(message)) => return Err(invalid(message)),
        };
        print_diagnostics(&loaded.warnings);
        let component = find_machine(&loaded.definitions, &machine, self.component.as_deref())
            .map_err(invalid)?
            .name
            .to_string();
        Ok(Prepared { loaded, component, machine, context, items })
    }

    /// The files and the machine: `--machine NAME`, or the original's `FILE... MACHINE` where
    /// the last argument is not a file.
    fn files_and_machine(&self) -> Result<(&[PathBuf], String), String> {
        if let Some(machine) = &self.machine {
            return Ok((&self.files, machine.clone()));
        }
        let hint =
            "name the machine: `FILE... --machine NAME`, or `FILE MACHINE` as in the original";
        let Some((last, files)) = self.files.split_last() else {
            return Err(format!("no component file given; {hint}"));
        };
        let looks_like_a_file = last.exists()
            || last.extension().is_some_and(|extension| {
                ["yaml", "yml", "json"].iter().any(|known| extension.eq_ignore_ascii_case(known))
            });
        match last.to_str() {
            Some(machine) if !files.is_empty() && !looks_like_a_file => {
                Ok((files, machine.to_owned()))
            }
            _ => Err(format!("no machine given; {hint}")),
        }
    }
}

/// Run components offline: create an instance, send scripted events, print the trace and exit.
#[derive(Debug, Args)]
#[command(after_help = format!("{EVENTS_HELP}

The runtime runs in this process with a memory store and a manual clock: timers fire only when
the clock is moved ({{\"advanceMs\": N}} or --advance-ms), each at its exact deadline. No business
code is registered, so onEntry/onExit/triggeredMethod hooks do nothing. Instances are named by
trace labels (Order#1, Payment#2) in order of appearance; times are relative to the start.

Examples:
  xcomponent-ai run order.yaml Order --events '[\"SUBMIT\"]'      (the original's form)
  xcomponent-ai run order.yaml --machine Order --context '{{\"amount\": 120}}' --events '[\"SUBMIT\"]'
  xcomponent-ai run order.yaml payment.yaml -m Order -e @events.json --output json

Exit status: 0 when every step ran (ignored events included), 1 on a runtime error (e.g. an
event addressed to an instance that has finished), 2 when the input is invalid (YAML errors are
printed as diagnostics, a bad --events item is named)."))]
pub struct RunArgs {
    #[command(flatten)]
    inputs: Inputs,
}

/// Runs the command.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let prepared = match args.inputs.prepare() {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| anyhow!("cannot start the async runtime: {error}"))?;
    runtime.block_on(drive(&args.inputs, prepared))
}

async fn drive(inputs: &Inputs, prepared: Prepared) -> Result<ExitCode> {
    let Prepared { loaded, component, machine, context, items } = prepared;
    let json = inputs.output == Output::Json;
    let emit = |lines: Vec<Line>| {
        for line in lines {
            if json {
                println!("{}", line.json);
            } else {
                println!("{}", line.text);
            }
        }
    };
    let (mut session, existing) =
        Session::start(loaded.definitions, Handlers::new(), SystemClock.now()).await?;
    if !json {
        println!("trace:");
    }
    emit(existing);
    let mut outcome = session.create_main(&component, &machine, context).await.map(&emit);
    if outcome.is_ok() {
        for item in &items {
            outcome = session.apply(item).await.map(&emit);
            if outcome.is_err() {
                break;
            }
        }
    }
    if let (Ok(()), Some(ms)) = (&outcome, inputs.advance_ms) {
        outcome = session.advance(ms).await.map(&emit);
    }
    let states = session.final_states().await;
    if json {
        for state in final_states_json(&states) {
            println!("{state}");
        }
    } else {
        println!("final states:");
        for line in final_states_text(&states, session.tracker()) {
            println!("{line}");
        }
    }
    session.shutdown().await;
    outcome.map(|()| ExitCode::SUCCESS)
}
