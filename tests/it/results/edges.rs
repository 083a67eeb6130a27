//! Every shipped segment with a day or share threshold, at its edges: a hand-made shop
//! (`edges.py land`) puts customers N-1, N and N+1 days before as_of, at the first and last
//! microsecond of the day in the pipeline's zone (Europe/Oslo, as_of two days after the switch
//! to summer time), and at the share rules' cut points. `edges.py check` derives every member
//! from the README's sentences and compares with what the shipped pipeline published. The
//! model's cuts (`expected_to_buy_soon`, `high_predicted_value`) are then run again with vars
//! set exactly on a published date and a tie group's share, and one step to either side.

use std::path::PathBuf;

use crate::support::{AS_OF, Outcome, Project, Size, column_values, python_script};

fn edges(args: &[&str]) -> Outcome {
    python_script("edges.py", args)
}

/// Runs the night with `vars` and checks it against the README; returns the members of
/// `expected_to_buy_soon` and `high_predicted_value`.
fn night(project: &Project, vars: &[String]) -> [usize; 2] {
    let pipeline = project.pipeline();
    let mut args = vec!["run", pipeline.to_str().unwrap(), "--as-of", AS_OF];
    for var in vars {
        args.extend(["--var", var]);
    }
    let ran = project.segflow(&args);
    assert_eq!(ran.code, 0, "{vars:?}: {ran:?}");
    let (data, out): (PathBuf, PathBuf) = (project.data(), project.out());
    let mut check = vec![
        "check",
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        AS_OF,
    ];
    check.extend(vars.iter().map(String::as_str));
    let checked = edges(&check);
    assert_eq!(checked.code, 0, "{vars:?}: {checked:?}");
    let segments = column_values(&out, "segment_membership", AS_OF, "segment");
    ["expected_to_buy_soon", "high_predicted_value"]
        .map(|segment| segments.iter().filter(|s| *s == segment).count())
}

#[test]
fn every_day_and_share_rule_holds_at_its_edges_in_the_shops_zone() {
    let project = Project::new(Size::Tiny);
    project.edit("pipelines/nightly_segments.yaml", |spec| {
        spec.replacen("timezone: UTC", "timezone: Europe/Oslo", 1)
    });
    let landed = edges(&["land", project.data().to_str().unwrap(), AS_OF]);
    assert_eq!(landed.code, 0, "{landed:?}");
    night(&project, &[]);

    let cuts = edges(&["cuts", project.out().to_str().unwrap(), AS_OF]);
    assert_eq!(cuts.code, 0, "{cuts:?}");
    let [days, at_or_above, buyers]: [u64; 3] = cuts
        .stdout
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let at = |days: u64, share: f64| {
        night(
            &project,
            &[
                format!("buy_soon_days={days}"),
                format!("high_predicted_value_share={share}"),
            ],
        )
    };
    let share = at_or_above as f64 / buyers as f64;
    let half_a_buyer = 0.5 / buyers as f64;
    let below = at(days - 1, share - half_a_buyer);
    let on = at(days, share);
    let above = at(days + 1, share + half_a_buyer);
    // On the cut, the day's buyers and the whole tie group are in; a step below, out.
    assert!(
        below[0] < on[0] && on[0] <= above[0],
        "{below:?} {on:?} {above:?}"
    );
    assert_eq!(
        on[1], at_or_above as usize,
        "the tie group at share {share}"
    );
    assert!(
        below[1] < on[1] - 1,
        "the tie group left together: {below:?} {on:?}"
    );
    assert_eq!(above[1], on[1], "half a buyer more share takes nobody in");
}
