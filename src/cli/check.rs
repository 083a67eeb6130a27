//! `segflow check`: a pipeline's checks against what is published for a date, read-only.

use segflow::pipeline::{LoadOptions, Pipeline};
use segflow::progress::Progress;
use segflow::run::{self, CheckStatus};

use super::args::CheckArgs;
use super::outcome::print_checks;
use super::{Failure, yesterday};

pub(super) async fn check_command(args: CheckArgs) -> Result<(), Failure> {
    let options = LoadOptions {
        var_overrides: args.values.vars.clone(),
        ..LoadOptions::default()
    };
    let pipeline = Pipeline::load(&args.pipeline, &options)?;
    let as_of = args
        .values
        .as_of
        .unwrap_or_else(|| yesterday(pipeline.timezone));
    let audit = run::check_published(&pipeline, as_of, &Progress::for_terminal()).await?;
    if args.json {
        for check in &audit.checks {
            say!(
                "{}",
                serde_json::to_string(check).expect("a check result serialises")
            );
        }
        for (name, why) in &audit.skipped {
            let skipped = serde_json::json!({ "name": name, "status": "skipped", "found": why });
            say!("{skipped}");
        }
    } else {
        say!("Checks of {} as published for {as_of}:", pipeline.name);
        print_checks(&audit.checks);
    }
    for (check, why) in &audit.skipped {
        eprintln!("skipped: check '{check}': {why}");
    }
    // The failed checks are listed above, each on its line.
    match audit
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Failed)
        .count()
    {
        0 => Ok(()),
        1 => Err(Failure::User(anyhow::anyhow!(
            "a check of {as_of}'s publication failed"
        ))),
        n => Err(Failure::User(anyhow::anyhow!(
            "{n} checks of {as_of}'s publication failed"
        ))),
    }
}
