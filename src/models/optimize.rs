//! The one optimiser the fits use: BFGS with a backtracking line search, over the logarithms
//! of the parameters (every parameter of these models is positive), each kept within
//! [`BOUND`] of 1 on either side.
//!
//! Stopping rule: converged when no component of the gradient of the mean negative
//! log-likelihood (per customer, with respect to the log parameters) exceeds 1e-9; also
//! converged when the line search can make no more progress (no step moves a parameter, or
//! promises a decrease above the value's precision) and the gradient is below 1e-6 (the
//! precision of the sums is exhausted). It fails after [`MAX_ITERATIONS`] iterations, when
//! the line search stalls with a larger gradient, or when a parameter ends at its bound: then
//! the data do not pin the parameter down, and nothing fitted is better than a number.

/// ln of the largest factor a parameter may move away from 1: 1e-8 ≤ θ ≤ 1e8.
pub(super) const BOUND: f64 = 18.420_680_743_952_367;
pub(super) const MAX_ITERATIONS: usize = 1_000;
const GRADIENT_TOLERANCE: f64 = 1e-9;
const STALLED_TOLERANCE: f64 = 1e-6;
/// The longest step in log space: a factor of e⁵ per iteration keeps every exp() finite.
const MAX_STEP: f64 = 5.0;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Minimum<const N: usize> {
    /// The log parameters at the minimum.
    pub at: [f64; N],
    pub value: f64,
    pub iterations: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum Stalled {
    #[error("it did not converge in {MAX_ITERATIONS} iterations")]
    TooManyIterations,
    #[error(
        "it stalled after {iterations} iterations with the likelihood still changing \
         (largest gradient {gradient:.1e})"
    )]
    LineSearch { iterations: usize, gradient: f64 },
    #[error("the likelihood is not finite at the starting point")]
    NotFinite,
    /// The index of the parameter at its bound, and the side (true for the upper one).
    #[error("parameter {index} ran to its {} bound", if *upper { "upper" } else { "lower" })]
    AtBound { index: usize, upper: bool },
}

/// The minimum of `f` (its value and gradient at a point) from `start`.
pub(super) fn minimize<const N: usize>(
    f: impl Fn(&[f64; N]) -> (f64, [f64; N]),
    start: [f64; N],
) -> Result<Minimum<N>, Stalled> {
    let norm = |g: &[f64; N]| g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let dot = |u: &[f64; N], v: &[f64; N]| u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
    let mut x = start;
    let (mut value, mut gradient) = f(&x);
    if !value.is_finite() || gradient.iter().any(|g| !g.is_finite()) {
        return Err(Stalled::NotFinite);
    }
    let mut inverse_hessian = identity::<N>();
    for iteration in 1..=MAX_ITERATIONS {
        if norm(&gradient) < GRADIENT_TOLERANCE {
            return finish(x, value, iteration - 1);
        }
        let mut direction = [0.0; N];
        for (i, d) in direction.iter_mut().enumerate() {
            *d = -dot(&inverse_hessian[i], &gradient);
        }
        if dot(&direction, &gradient) >= 0.0 {
            // Not a descent direction (the curvature estimate went wrong): start it afresh.
            inverse_hessian = identity::<N>();
            direction = gradient.map(|g| -g);
        }
        let longest = norm(&direction);
        if longest > MAX_STEP {
            direction = direction.map(|d| d * MAX_STEP / longest);
        }
        let slope = dot(&direction, &gradient);
        let mut step = 1.0;
        let accepted = loop {
            let mut trial = [0.0; N];
            for i in 0..N {
                trial[i] = (x[i] + step * direction[i]).clamp(-BOUND, BOUND);
            }
            if trial == x || (step * slope).abs() < 1e-15 * value.abs() {
                // The step no longer moves any parameter, or the decrease it promises is
                // below the value's precision: the sums' precision is exhausted.
                break None;
            }
            let (trial_value, trial_gradient) = f(&trial);
            // Armijo's sufficient decrease, and a strict one: near the minimum the decrease a
            // step promises falls below the value's precision, and equal values would let the
            // search creep on without end.
            if trial_value.is_finite()
                && trial_gradient.iter().all(|g| g.is_finite())
                && trial_value <= value + 1e-4 * step * slope
                && trial_value < value
            {
                break Some((trial, trial_value, trial_gradient));
            }
            step *= 0.5;
            if step < 1e-12 {
                break None;
            }
        };
        let Some((next, next_value, next_gradient)) = accepted else {
            let largest = norm(&gradient);
            return if largest < STALLED_TOLERANCE || at_bound(&x).is_some() {
                finish(x, value, iteration)
            } else {
                Err(Stalled::LineSearch {
                    iterations: iteration,
                    gradient: largest,
                })
            };
        };
        let s: [f64; N] = std::array::from_fn(|i| next[i] - x[i]);
        let y: [f64; N] = std::array::from_fn(|i| next_gradient[i] - gradient[i]);
        let sy = dot(&s, &y);
        if sy > 1e-16 {
            // H ← (I − ρsyᵀ) H (I − ρysᵀ) + ρssᵀ
            let rho = 1.0 / sy;
            let hy: [f64; N] = std::array::from_fn(|i| dot(&inverse_hessian[i], &y));
            let yhy = dot(&y, &hy);
            for i in 0..N {
                for j in 0..N {
                    inverse_hessian[i][j] +=
                        rho * ((1.0 + rho * yhy) * s[i] * s[j] - hy[i] * s[j] - s[i] * hy[j]);
                }
            }
        }
        x = next;
        value = next_value;
        gradient = next_gradient;
    }
    Err(Stalled::TooManyIterations)
}

fn identity<const N: usize>() -> [[f64; N]; N] {
    std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 1.0 } else { 0.0 }))
}

/// The first parameter within a step's rounding of its bound, if any: it ran off, and the
/// likelihood would have taken it further.
fn at_bound(at: &[f64]) -> Option<usize> {
    at.iter().position(|v| v.abs() >= BOUND - 0.01)
}

fn finish<const N: usize>(
    at: [f64; N],
    value: f64,
    iterations: usize,
) -> Result<Minimum<N>, Stalled> {
    if let Some(index) = at_bound(&at) {
        return Err(Stalled::AtBound {
            index,
            upper: at[index] > 0.0,
        });
    }
    Ok(Minimum {
        at,
        value,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_curved_valley() {
        // A bent valley: minimum at (0, 0), value 0.
        let f = |p: &[f64; 2]| {
            let (x, y) = (p[0], p[1]);
            let value = x * x + 10.0 * (y - x * x).powi(2);
            let gradient = [2.0 * x - 40.0 * x * (y - x * x), 20.0 * (y - x * x)];
            (value, gradient)
        };
        let minimum = minimize(f, [1.5, -1.0]).unwrap();
        assert!(minimum.at.iter().all(|v| v.abs() < 1e-6), "{minimum:?}");
    }

    #[test]
    fn a_parameter_that_runs_off_is_an_error() {
        // Decreasing forever in the first parameter.
        let f = |p: &[f64; 2]| ((-p[0]).exp() + p[1] * p[1], [-(-p[0]).exp(), 2.0 * p[1]]);
        assert_eq!(
            minimize(f, [0.0, 1.0]),
            Err(Stalled::AtBound {
                index: 0,
                upper: true
            })
        );
    }
}
