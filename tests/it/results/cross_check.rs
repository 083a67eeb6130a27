//! An independent cross-check at a few thousand customers: the generated shop is made to look
//! like a real export (NULL refunds, full refunds on paid orders, orders without a known
//! customer, unknown sign-up times, blank emails, checkouts completed after as_of, New York
//! timestamps), then DuckDB, running SQL written from the documented rules (not the shipped
//! SQL), computes features, segments, a summary and the win-back list from the raw data, and
//! must agree exactly with what segflow published.

use crate::support::{AS_OF, Outcome, Project, Size, python_script};

fn cross_check(args: &[&str]) -> Outcome {
    python_script("cross_check.py", args)
}

#[test]
fn duckdb_computes_the_same_segments_independently() {
    let project = Project::new(Size::Large);
    let data = project.data();
    let dirty = cross_check(&["dirty", data.to_str().unwrap(), AS_OF]);
    assert_eq!(dirty.code, 0, "{dirty:?}");
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let check = cross_check(&[
        "check",
        data.to_str().unwrap(),
        project.out().to_str().unwrap(),
        AS_OF,
    ]);
    assert_eq!(check.code, 0, "{check:?}");
}
