//! Predictive models of a non-contractual customer base (customers may buy at any time and
//! leave without saying so), fitted by maximum likelihood: [`bgnbd`] for how often customers
//! buy and whether they are still customers, [`gamma_gamma`] for how much they spend per
//! order. The numbers alone; `functions::models` makes them SQL functions.

pub mod bgnbd;
pub mod gamma_gamma;
mod optimize;
mod special;

pub use bgnbd::{BgNbd, History};
pub use gamma_gamma::{GammaGamma, Spend};

/// The fewest repeat buyers a fit accepts: below this the parameters that describe repeat
/// buying are guesses.
pub const MIN_REPEAT_BUYERS: f64 = 10.0;

/// A model with the parameters that maximise the likelihood of its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted<M> {
    pub model: M,
    pub log_likelihood: f64,
    /// The customers the fit used (the histories' counts, summed).
    pub customers: f64,
    pub iterations: usize,
}

impl<M> Fitted<M> {
    /// The same fit, its parameters in another form.
    pub fn map<N>(self, parameters: impl FnOnce(M) -> N) -> Fitted<N> {
        Fitted {
            model: parameters(self.model),
            log_likelihood: self.log_likelihood,
            customers: self.customers,
            iterations: self.iterations,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error(
        "the {model} model needs at least {} repeat buyers (customers with a purchase after \
         their first) to learn how customers come back, and its input has {found} among \
         {customers} customers: fit it on a longer history, or pin its parameters until \
         then (docs/shipped-pipeline.md, \"Predictions\")",
        MIN_REPEAT_BUYERS as u64
    )]
    TooFewRepeatBuyers {
        model: &'static str,
        found: u64,
        customers: u64,
    },
    #[error("the {model} model's input has {problem}")]
    Invalid {
        model: &'static str,
        problem: String,
    },
    #[error(
        "the {model} fit failed: {why}; nothing was predicted from it (docs/shipped-pipeline.md, \"Predictions\": \
         what a fit needs, and how to pin the parameters instead)"
    )]
    NotConverged { model: &'static str, why: String },
    #[error("a {model} prediction failed: {problem}")]
    Prediction {
        model: &'static str,
        problem: String,
    },
}

/// Refuses a fit on fewer than [`MIN_REPEAT_BUYERS`] repeat buyers.
fn enough_repeat_buyers(
    model: &'static str,
    repeat_buyers: f64,
    customers: f64,
) -> Result<(), FitError> {
    if repeat_buyers < MIN_REPEAT_BUYERS {
        return Err(FitError::TooFewRepeatBuyers {
            model,
            found: repeat_buyers as u64,
            customers: customers as u64,
        });
    }
    Ok(())
}

/// The log parameters (named `names` in errors) that minimise `negative_mean`, from `start`.
fn maximise_likelihood<const N: usize>(
    model: &'static str,
    names: [&str; N],
    start: [f64; N],
    negative_mean: impl Fn(&[f64; N]) -> (f64, [f64; N]),
) -> Result<optimize::Minimum<N>, FitError> {
    optimize::minimize(negative_mean, start).map_err(|stalled| FitError::NotConverged {
        model,
        why: stalled.explain(&names),
    })
}

impl optimize::Stalled {
    /// What went wrong, with the parameters by name.
    fn explain(&self, names: &[&str]) -> String {
        match self {
            optimize::Stalled::AtBound { index, upper } => format!(
                "{} ran off to {} (the data do not pin it down: too little history, or \
                 histories all alike)",
                names[*index],
                if *upper { "infinity" } else { "zero" }
            ),
            other => other.to_string(),
        }
    }
}

/// Asserts that `f`'s gradient at `at` is the slope of its value, by central differences.
#[cfg(test)]
fn assert_gradient<const N: usize>(f: impl Fn(&[f64; N]) -> (f64, [f64; N]), at: [f64; N]) {
    let (_, gradient) = f(&at);
    for i in 0..N {
        let h = 1e-6;
        let (mut up, mut down) = (at, at);
        up[i] += h;
        down[i] -= h;
        let slope = (f(&up).0 - f(&down).0) / (2.0 * h);
        assert!(
            (gradient[i] - slope).abs() < 1e-7,
            "{i}: {} vs {slope}",
            gradient[i]
        );
    }
}
