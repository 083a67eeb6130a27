//! Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV", JMR 42(4); Fader & Hardie, "The
//! Gamma-Gamma Model of Monetary Value"): a customer's order values vary around their own
//! mean spend ν, which varies across customers as Gamma(q, γ), the values as Gamma(p, ν).
//! It is fitted on repeat buyers: x repeat orders of average value m̄ each. Then a customer's
//! expected order value is p(γ + x·m̄) / (p·x + q − 1), the population's p·γ / (q − 1).

use super::special::{digamma, ln_gamma};
use super::{FitError, Fitted, enough_repeat_buyers, maximise_likelihood};

pub const MODEL: &str = "Gamma-Gamma";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// Repeat buyers with the same orders, counted once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    /// Repeat orders.
    pub x: f64,
    /// Their average value.
    pub mean_value: f64,
    pub customers: f64,
}

impl GammaGamma {
    /// Fits p, q, γ by maximum likelihood. The expected order value needs q > 1 (a finite
    /// mean spend); a fit with q ≤ 1 is refused.
    pub fn fit(spends: &[Spend]) -> Result<Fitted<GammaGamma>, FitError> {
        for spend in spends {
            let Spend { x, mean_value, .. } = *spend;
            if !(x > 0.0 && x.is_finite() && mean_value > 0.0 && mean_value.is_finite()) {
                return Err(FitError::Invalid {
                    model: MODEL,
                    problem: format!(
                        "a customer with x = {x} repeat orders of average value {mean_value}: \
                         the model needs x > 0 and a positive average value"
                    ),
                });
            }
        }
        let customers: f64 = spends.iter().map(|s| s.customers).sum();
        enough_repeat_buyers(MODEL, customers, customers)?;
        let data = Prepared::new(spends);
        let mean_value = spends
            .iter()
            .map(|s| s.mean_value * s.customers)
            .sum::<f64>()
            / customers;
        // Start at p = q = 1 and γ at the mean value's scale.
        let start = [0.0, 0.0, mean_value.ln()];
        let minimum =
            maximise_likelihood(MODEL, ["p", "q", "gamma"], start, |p| data.negative_mean(p))?;
        let [p, q, gamma] = minimum.at.map(f64::exp);
        if q <= 1.0 {
            return Err(FitError::NotConverged {
                model: MODEL,
                why: format!(
                    "q = {q:.4} is not above 1, so the spread of spend across customers has \
                     no finite mean: a few customers' averages dwarf the rest"
                ),
            });
        }
        Ok(Fitted {
            model: GammaGamma { p, q, gamma },
            log_likelihood: -minimum.value * customers,
            customers,
            iterations: minimum.iterations,
        })
    }
}

struct Prepared {
    xs: Vec<f64>,
    rows: Vec<(usize, f64, f64)>,
    customers: f64,
}

impl Prepared {
    fn new(spends: &[Spend]) -> Prepared {
        let mut xs: Vec<f64> = spends.iter().map(|s| s.x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let rows = spends
            .iter()
            .map(|s| (xs.partition_point(|&v| v < s.x), s.mean_value, s.customers))
            .collect();
        Prepared {
            xs,
            rows,
            customers: spends.iter().map(|s| s.customers).sum(),
        }
    }

    /// The negative log-likelihood per customer at log parameters, and its gradient.
    fn negative_mean(&self, logs: &[f64; 3]) -> (f64, [f64; 3]) {
        let [p, q, gamma] = logs.map(f64::exp);
        let ln_gamma_q = ln_gamma(q);
        let digamma_q = digamma(q);
        let ln_g = gamma.ln();
        // per x: lnΓ(px+q) − lnΓ(px), ψ(px+q), ψ(px), ln x
        let per_x: Vec<[f64; 4]> = self
            .xs
            .iter()
            .map(|&x| {
                let px = p * x;
                [
                    ln_gamma(px + q) - ln_gamma(px),
                    digamma(px + q),
                    digamma(px),
                    x.ln(),
                ]
            })
            .collect();
        let mut total = 0.0;
        let mut gradient = [0.0; 3];
        for &(index, m, n) in &self.rows {
            let x = self.xs[index];
            let [ln_ratio, psi_pxq, psi_px, ln_x] = per_x[index];
            let px = p * x;
            let ln_m = m.ln();
            let ln_gxm = (gamma + x * m).ln();
            total += n
                * (ln_ratio - ln_gamma_q + q * ln_g + (px - 1.0) * ln_m + px * ln_x
                    - (px + q) * ln_gxm);
            gradient[0] += n * p * x * (psi_pxq - psi_px + ln_m + ln_x - ln_gxm);
            gradient[1] += n * q * (psi_pxq - digamma_q + ln_g - ln_gxm);
            gradient[2] += n * gamma * (q / gamma - (px + q) / (gamma + x * m));
        }
        let scale = -1.0 / self.customers;
        (total * scale, gradient.map(|g| g * scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gradient_is_the_likelihoods_slope() {
        let spends = [
            Spend {
                x: 1.0,
                mean_value: 20.0,
                customers: 3.0,
            },
            Spend {
                x: 4.0,
                mean_value: 55.5,
                customers: 1.0,
            },
            Spend {
                x: 1.0,
                mean_value: 8.0,
                customers: 2.0,
            },
        ];
        let data = Prepared::new(&spends);
        super::super::assert_gradient(|p| data.negative_mean(p), [1.5, 1.2, 2.7]);
    }
}
