//! The special functions the models need, in forms that stay finite for customers with
//! hundreds of orders: log-gamma (libm's), digamma, and the Gauss hypergeometric function
//! ₂F₁ as a logarithm.

/// ln Γ(x), for x > 0.
pub(super) fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// ψ(x) = d/dx ln Γ(x), for x > 0: shifted up to 10 by ψ(x) = ψ(x + 1) − 1/x, then its
/// asymptotic series to the x⁻¹² term (error below 1e-15 from 10 on).
pub(super) fn digamma(mut x: f64) -> f64 {
    let mut shift = 0.0;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let inv2 = 1.0 / (x * x);
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2
                        * (1.0 / 252.0
                            - inv2
                                * (1.0 / 240.0 - inv2 * (1.0 / 132.0 - inv2 * 691.0 / 32760.0)))));
    shift + x.ln() - 0.5 / x - series
}

/// ln(1 + eˣ) without overflow.
pub(super) fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// A value as its logarithm and sign, for quantities that overflow a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Signed {
    pub ln_abs: f64,
    pub negative: bool,
}

/// Why ₂F₁ could not be summed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum SeriesError {
    #[error("₂F₁({a}, {b}; {c}; {z}) is undefined: c is zero or a negative integer")]
    Pole { a: f64, b: f64, c: f64, z: f64 },
    #[error("the series of ₂F₁({a}, {b}; {c}; {z}) did not settle within {MAX_TERMS} terms")]
    Slow { a: f64, b: f64, c: f64, z: f64 },
}

const MAX_TERMS: usize = 2_000_000;

/// ₂F₁(a, b; c; z) at each z (0 ≤ z < 1) as ln|value| and sign, by the power series
/// Σ (a)ₙ(b)ₙ / ((c)ₙ n!) zⁿ, whose coefficients the z share (the CLV needs twelve). Each
/// running sum is rescaled as it grows, because with a and b in the hundreds (a customer's
/// order count) it exceeds any float long before it settles. A sum stops when its terms fall
/// geometrically (each ratio at most the last checked, or below z, its limit) and the tail
/// that bound allows is below 1e-17 of the sum, checked every eighth term.
pub(super) fn ln_hyp2f1(a: f64, b: f64, c: f64, zs: &[f64]) -> Result<Vec<Signed>, SeriesError> {
    let mut sums: Vec<Series> = zs.iter().map(|&z| Series::new(z)).collect();
    let mut left = sums.len();
    for n in 0..MAX_TERMS {
        if left == 0 {
            break;
        }
        let n = n as f64;
        let denominator = (c + n) * (n + 1.0);
        if denominator == 0.0 {
            let z = zs.first().copied().unwrap_or(0.0);
            return Err(SeriesError::Pole { a, b, c, z });
        }
        let coefficient = (a + n) * (b + n) / denominator;
        for series in sums.iter_mut().filter(|s| s.done.is_none()) {
            if series.add(coefficient, c + n > 0.0) {
                left -= 1;
            }
        }
    }
    sums.into_iter()
        .zip(zs)
        .map(|(series, &z)| series.done.ok_or(SeriesError::Slow { a, b, c, z }))
        .collect()
}

/// One z's running sum of the ₂F₁ series.
struct Series {
    z: f64,
    term: f64,
    sum: f64,
    ln_scale: f64,
    terms: u32,
    /// The ratio of the last term checked to the one before it.
    previous_ratio: f64,
    done: Option<Signed>,
}

impl Series {
    fn new(z: f64) -> Series {
        debug_assert!((0.0..1.0).contains(&z), "z = {z}");
        Series {
            z,
            term: 1.0,
            sum: 1.0,
            ln_scale: 0.0,
            terms: 0,
            previous_ratio: f64::INFINITY,
            done: None,
        }
    }

    /// Adds the next term, `coefficient` · z times the last; true when the sum is done
    /// (`settled` says whether the tail test applies yet: c + n > 0).
    fn add(&mut self, coefficient: f64, settled: bool) -> bool {
        const RESCALE: f64 = 1e200;
        let ratio = coefficient * self.z;
        self.term *= ratio;
        self.sum += self.term;
        if self.sum.abs() > RESCALE || self.term.abs() > RESCALE {
            self.sum /= RESCALE;
            self.term /= RESCALE;
            self.ln_scale += RESCALE.ln();
        }
        self.terms += 1;
        if self.term != 0.0 && !self.terms.is_multiple_of(8) {
            // The test below costs more than a term: every eighth term is soon enough.
            return false;
        }
        let bound = ratio.abs();
        let falling = bound <= self.previous_ratio || bound <= self.z;
        self.previous_ratio = bound;
        let limit = bound.max(self.z);
        let finished = self.term == 0.0
            || (falling
                && settled
                && bound < 1.0
                && self.term.abs() * limit / (1.0 - limit) <= 1e-17 * self.sum.abs());
        if finished {
            self.done = Some(Signed {
                ln_abs: self.sum.abs().ln() + self.ln_scale,
                negative: self.sum < 0.0,
            });
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tolerance: f64) {
        assert!(
            (got - want).abs() <= tolerance * want.abs().max(1.0),
            "{got} is not {want}"
        );
    }

    #[test]
    fn digamma_matches_known_values() {
        let euler = 0.577_215_664_901_532_9;
        close(digamma(1.0), -euler, 1e-14);
        close(digamma(0.5), -euler - 2.0 * 2f64.ln(), 1e-14);
        // ψ(n) = H(n−1) − γ
        let harmonic: f64 = (1..100).map(|k| 1.0 / f64::from(k)).sum();
        close(digamma(100.0), harmonic - euler, 1e-14);
        // the derivative of ln Γ, by central differences
        for x in [0.243, 4.414, 37.5] {
            let h = 1e-5;
            close(
                digamma(x),
                (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h),
                1e-8,
            );
        }
    }

    #[test]
    fn hypergeometric_matches_closed_forms() {
        let value = |a, b, c, z| {
            let s = ln_hyp2f1(a, b, c, &[z]).unwrap()[0];
            assert!(!s.negative);
            s.ln_abs.exp()
        };
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z
        for z in [0.1, 0.5, 0.9, 0.99] {
            close(value(1.0, 1.0, 2.0, z), -(1.0 - z).ln() / z, 1e-13);
        }
        // ₂F₁(a, b; b; z) = (1 − z)^−a
        close(value(2.5, 3.0, 3.0, 0.7), 0.3f64.powf(-2.5), 1e-13);
        // huge parameters: (1 − z)^−a as a logarithm, far beyond a float
        let big = ln_hyp2f1(5000.0, 7.0, 7.0, &[0.9]).unwrap()[0];
        close(big.ln_abs, -5000.0 * 0.1f64.ln(), 1e-12);
        // several z at once, each as alone
        let zs = [0.2, 0.95, 0.6];
        let together = ln_hyp2f1(0.4, 3.5, 2.2, &zs).unwrap();
        for (z, value) in zs.iter().zip(together) {
            assert_eq!(value, ln_hyp2f1(0.4, 3.5, 2.2, &[*z]).unwrap()[0], "{z}");
        }
        // c at a pole
        assert!(matches!(
            ln_hyp2f1(1.0, 1.0, -2.0, &[0.5]),
            Err(SeriesError::Pole { .. })
        ));
    }
}
