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

/// ₂F₁(a, b; c; z) for 0 ≤ z < 1 as ln|value| and sign, by its power series
/// Σ (a)ₙ(b)ₙ / ((c)ₙ n!) zⁿ. The running sum is rescaled as it grows, because with a and b
/// in the hundreds (a customer's order count) it exceeds any float long before it settles.
/// It stops when the terms fall geometrically (each ratio at most the last, or below z, its
/// limit) and the tail that bound allows is below 1e-17 of the sum.
pub(super) fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<Signed, SeriesError> {
    debug_assert!((0.0..1.0).contains(&z), "z = {z}");
    const RESCALE: f64 = 1e200;
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    let mut ln_scale = 0.0;
    let mut previous_ratio = f64::INFINITY;
    for n in 0..MAX_TERMS {
        let n = n as f64;
        let denominator = (c + n) * (n + 1.0);
        if denominator == 0.0 {
            return Err(SeriesError::Pole { a, b, c, z });
        }
        let ratio = (a + n) * (b + n) / denominator * z;
        term *= ratio;
        sum += term;
        if sum.abs() > RESCALE || term.abs() > RESCALE {
            sum /= RESCALE;
            term /= RESCALE;
            ln_scale += RESCALE.ln();
        }
        if term == 0.0 {
            break;
        }
        let bound = ratio.abs();
        let falling = bound <= previous_ratio || bound <= z;
        previous_ratio = bound;
        if falling && bound < 1.0 && c + n > 0.0 {
            let tail = term.abs() * bound.max(z) / (1.0 - bound.max(z));
            if tail <= 1e-17 * sum.abs() {
                return Ok(Signed {
                    ln_abs: sum.abs().ln() + ln_scale,
                    negative: sum < 0.0,
                });
            }
        }
    }
    if sum.is_finite() && term == 0.0 {
        return Ok(Signed {
            ln_abs: sum.abs().ln() + ln_scale,
            negative: sum < 0.0,
        });
    }
    Err(SeriesError::Slow { a, b, c, z })
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
            let s = ln_hyp2f1(a, b, c, z).unwrap();
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
        let big = ln_hyp2f1(5000.0, 7.0, 7.0, 0.9).unwrap();
        close(big.ln_abs, -5000.0 * 0.1f64.ln(), 1e-12);
        // c at a pole
        assert!(matches!(
            ln_hyp2f1(1.0, 1.0, -2.0, 0.5),
            Err(SeriesError::Pole { .. })
        ));
    }
}
