//! The order steps run in: each after the steps it reads.

use std::collections::HashMap;

use super::model::Step;

/// Steps that read each other in a circle, in reading order; the first step is repeated at
/// the end by `describe`.
pub(super) struct Cycle {
    pub(super) steps: Vec<Step>,
}

impl Cycle {
    /// `a (a.sql) -> b (b.sql) -> a (a.sql)`
    pub(super) fn describe(&self) -> String {
        self.steps
            .iter()
            .chain(self.steps.first())
            .map(|s| format!("{} ({})", s.name, s.sql_file.display()))
            .collect::<Vec<_>>()
            .join(" -> ")
    }
}

/// Orders steps so that each comes after the steps it reads, YAML order among equals.
pub(super) fn dependency_order(steps: Vec<Step>) -> Result<Vec<Step>, Cycle> {
    let position: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = steps
        .iter()
        .map(|s| {
            s.sql
                .tables
                .iter()
                .filter_map(|t| position.get(t.as_str()).copied())
                .collect()
        })
        .collect();
    let mut done = vec![false; steps.len()];
    let mut order = Vec::new();
    while order.len() < steps.len() {
        let ready = (0..steps.len()).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
        match ready {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                let cycle = find_cycle(&deps, &done);
                let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
                let steps = cycle.iter().filter_map(|&i| slots[i].take()).collect();
                return Err(Cycle { steps });
            }
        }
    }
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each step is taken once"))
        .collect())
}

/// Some cycle among the steps not yet ordered (each of which waits on another).
fn find_cycle(deps: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let start = (0..deps.len())
        .find(|&i| !done[i])
        .expect("an unordered step");
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = *deps[current]
            .iter()
            .find(|&&d| !done[d])
            .expect("an unordered step waits on another unordered step");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            return path[pos..].to_vec();
        }
        path.push(next);
        current = next;
    }
}
