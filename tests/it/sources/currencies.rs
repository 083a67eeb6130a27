//! Currencies (docs/shipped-pipeline.md, "Currencies"): the shipped pipeline refuses orders in a currency
//! other than the shop's, naming each with its orders; converted as the README says
//! (a `rates` source, `paid_orders_converted.sql`), every customer's revenue is what
//! `currencies.py` derives from the raw orders and rates by the README's rules.

use crate::support::{AS_OF, Outcome, Project, Size, python_script};

fn currencies(args: &[&str]) -> Outcome {
    python_script("currencies.py", args)
}

fn shop_in_three_currencies() -> Project {
    let project = Project::new(Size::Small);
    let landed = currencies(&["land", project.data().to_str().unwrap()]);
    assert_eq!(landed.code, 0, "{landed:?}");
    project
}

#[test]
fn orders_in_another_currency_fail_the_night_naming_each() {
    let project = shop_in_three_currencies();
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 1, "{run:?}");
    // Orders placed by the end of as_of: four in NOK (not the one after), two in SEK; the
    // order without a currency is the shop's.
    for named in [
        "check 'orders_currency' on 'orders'",
        "currency=NOK, orders=4",
        "currency=SEK, orders=2",
    ] {
        assert!(run.stderr.contains(named), "{named}: {run:?}");
    }
    assert!(
        !project.out().join("customer_features").exists(),
        "nothing is published"
    );
}

/// The changes the README's "Currencies" gives for a shop that sells in several.
fn convert_currencies(project: &Project) {
    project.edit("pipelines/nightly_segments.yaml", |spec| {
        let replace = |spec: String, from: &str, to: &str| {
            assert!(spec.contains(from), "the shipped pipeline has {from}");
            spec.replacen(from, to, 1)
        };
        let spec = replace(
            spec,
            "\nsteps:\n",
            "  rates:\n    url: ${SEGFLOW_DATA:-data}/rates/\n    key: [currency, day]\n    \
             columns:\n      currency: string\n      day: date\n      rate: decimal(18,8)\n\n\
             steps:\n",
        );
        let spec = replace(
            spec,
            "  - name: paid_orders\n    sql: ../queries/paid_orders.sql\n    \
             incremental: { source: orders, time: ordered_at }\n",
            "  - name: paid_orders_as_placed\n    sql: ../queries/paid_orders.sql\n    \
             incremental: { source: orders, time: ordered_at }\n  \
             - { name: paid_orders, sql: ../queries/paid_orders_converted.sql }\n",
        );
        let spec = replace(
            spec,
            "    incremental: { source: orders, time: ordered_at, fold: ../queries/customer_orders_fold.sql }\n",
            "",
        );
        replace(
            spec,
            "  - { name: orders_currency, table: orders, sql: ../queries/checks/orders_currency.sql }\n",
            "  - { name: orders_without_rate, table: paid_orders_as_placed, sql: ../queries/checks/orders_without_rate.sql }\n",
        )
    });
}

#[test]
fn converted_orders_count_at_the_rate_in_force_on_their_day() {
    let project = shop_in_three_currencies();
    convert_currencies(&project);
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 0, "{run:?}");
    let (data, out) = (project.data(), project.out());
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    let checked = currencies(&["check", data, out, AS_OF]);
    assert_eq!(checked.code, 0, "{checked:?}");

    // An order in NOK from before NOK's first rate: the run fails naming it, and the
    // night's publication stays as it was.
    let before = project.snapshot();
    let early = currencies(&["early", data]);
    assert_eq!(early.code, 0, "{early:?}");
    let run = project.run_nightly(AS_OF);
    assert_eq!(run.code, 1, "{run:?}");
    for named in [
        "check 'orders_without_rate' on 'paid_orders_as_placed'",
        "currency=NOK, orders=1, first_order_day=2026-03-19, first_rate_day=2026-03-20",
    ] {
        assert!(run.stderr.contains(named), "{named}: {run:?}");
    }
    assert_eq!(project.snapshot(), before, "the publication stands");
}
