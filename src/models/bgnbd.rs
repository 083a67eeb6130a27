//! BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way", Marketing
//! Science 24(2)): while active, a customer buys at a Poisson rate λ ~ Gamma(r, α); after
//! each purchase they become inactive with probability p ~ Beta(a, b). A customer's history
//! is x (repeat purchases), t_x (time of the last purchase since the first) and T (time from
//! the first purchase to the end of observation), all in one unit of time.

use super::optimize::BOUND;
use super::special::{Signed, digamma, ln_gamma, ln_hyp2f1, softplus};
use super::{FitError, Fitted, enough_repeat_buyers, maximise_likelihood};

pub const MODEL: &str = "BG/NBD";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Customers with the same history, counted once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct History {
    pub x: f64,
    pub t_x: f64,
    /// T in the paper.
    pub observed: f64,
    pub customers: f64,
}

impl History {
    fn check(&self) -> Result<(), String> {
        let Self {
            x, t_x, observed, ..
        } = *self;
        if ![x, t_x, observed].iter().all(|v| v.is_finite()) {
            return Err(format!(
                "x = {x}, t_x = {t_x}, T = {observed} is not finite"
            ));
        }
        if x < 0.0 || t_x < 0.0 || t_x > observed {
            return Err(format!(
                "x = {x}, t_x = {t_x}, T = {observed} breaks 0 ≤ x and 0 ≤ t_x ≤ T"
            ));
        }
        if x == 0.0 && t_x != 0.0 {
            return Err(format!(
                "x = 0 with t_x = {t_x}: a customer without repeat purchases has t_x = 0"
            ));
        }
        Ok(())
    }
}

impl BgNbd {
    /// Fits r, α, a, b by maximum likelihood (see [`super::optimize`] for the stopping rule).
    pub fn fit(histories: &[History]) -> Result<Fitted<BgNbd>, FitError> {
        let invalid = |problem| FitError::Invalid {
            model: MODEL,
            problem,
        };
        for history in histories {
            history.check().map_err(invalid)?;
        }
        let customers: f64 = histories.iter().map(|h| h.customers).sum();
        let repeat_buyers: f64 = histories
            .iter()
            .filter(|h| h.x > 0.0)
            .map(|h| h.customers)
            .sum();
        enough_repeat_buyers(MODEL, repeat_buyers, customers)?;
        let data = Prepared::new(histories);
        // Start at α = the mean T, the scale of the purchase times; the rest at 1.
        let mean_observed = histories
            .iter()
            .map(|h| h.observed * h.customers)
            .sum::<f64>()
            / customers;
        let start = [
            0.0,
            mean_observed.max(1e-6).ln().clamp(-BOUND, BOUND),
            0.0,
            0.0,
        ];
        let minimum = maximise_likelihood(MODEL, ["r", "alpha", "a", "b"], start, |p| {
            data.negative_mean(p)
        })?;
        let [r, alpha, a, b] = minimum.at.map(f64::exp);
        Ok(Fitted {
            model: BgNbd { r, alpha, a, b },
            log_likelihood: -minimum.value * customers,
            customers,
            iterations: minimum.iterations,
        })
    }

    /// ln of a/(b+x−1) · ((α+T)/(α+t_x))^(r+x): P(alive) = 1 / (1 + e^this) for x > 0.
    fn ln_odds_inactive(&self, x: f64, t_x: f64, observed: f64) -> Option<f64> {
        (x > 0.0).then(|| {
            self.a.ln() - (self.b + x - 1.0).ln()
                + (self.r + x) * ((self.alpha + observed).ln() - (self.alpha + t_x).ln())
        })
    }

    /// The probability that a customer with this history is still active at T.
    pub fn p_alive(&self, x: f64, t_x: f64, observed: f64) -> f64 {
        match self.ln_odds_inactive(x, t_x, observed) {
            None => 1.0,
            Some(l) if l > 0.0 => (-l).exp() / (1.0 + (-l).exp()),
            Some(l) => 1.0 / (1.0 + l.exp()),
        }
    }

    /// E[Y(t) | x, t_x, T]: the purchases expected in the next `t` (eq. 10 of the paper).
    pub fn expected_purchases(
        &self,
        t: f64,
        x: f64,
        t_x: f64,
        observed: f64,
    ) -> Result<f64, FitError> {
        Ok(self.expected_purchases_by(&[t], x, t_x, observed)?[0])
    }

    /// E[Y(t) | x, t_x, T] for each t, computed as logarithms so that a customer with
    /// thousands of orders stays finite, and with one pass over the ₂F₁ series for all t.
    fn expected_purchases_by(
        &self,
        ts: &[f64],
        x: f64,
        t_x: f64,
        observed: f64,
    ) -> Result<Vec<f64>, FitError> {
        let Self { r, alpha, a, b } = *self;
        let c = a + b + x - 1.0;
        let positive: Vec<f64> = ts.iter().copied().filter(|&t| t > 0.0).collect();
        let zs: Vec<f64> = positive
            .iter()
            .map(|t| t / (alpha + observed + t))
            .collect();
        let series = ln_hyp2f1(r + x, b + x, c, &zs).map_err(|e| FitError::Prediction {
            model: MODEL,
            problem: e.to_string(),
        })?;
        let coefficient = c / (a - 1.0);
        let ln_denominator = self
            .ln_odds_inactive(x, t_x, observed)
            .map_or(0.0, softplus);
        let mut by_t = positive.iter().zip(series);
        ts.iter()
            .map(|&t| {
                if t <= 0.0 {
                    return Ok(0.0);
                }
                let (&t, series) = by_t.next().expect("one series per positive t");
                // 1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(...)
                let ln_product = (r + x) * ((alpha + observed).ln() - (alpha + observed + t).ln())
                    + series.ln_abs;
                let bracket = if series.negative {
                    Signed {
                        ln_abs: softplus(ln_product),
                        negative: false,
                    }
                } else if ln_product < 0.0 {
                    Signed {
                        ln_abs: (-ln_product.exp_m1()).ln(),
                        negative: false,
                    }
                } else {
                    Signed {
                        ln_abs: ln_product + (-(-ln_product).exp_m1()).ln(),
                        negative: true,
                    }
                };
                let magnitude = (coefficient.abs().ln() + bracket.ln_abs - ln_denominator).exp();
                let negative = (coefficient < 0.0) != bracket.negative;
                let value = if negative { -magnitude } else { magnitude };
                if value.is_finite() {
                    Ok(value.max(0.0))
                } else {
                    Err(FitError::Prediction {
                        model: MODEL,
                        problem: format!(
                            "E[Y({t})] for x = {x}, t_x = {t_x}, T = {observed} is not finite"
                        ),
                    })
                }
            })
            .collect()
    }

    /// The purchases expected in each of the next `months`, each discounted by
    /// (1 + `monthly_discount`)^month and summed, as `customer_lifetime_value` of the
    /// `lifetimes` library computes them: multiplied by the expected order value, this is the
    /// customer lifetime value over that horizon.
    pub fn discounted_purchases(
        &self,
        months: u32,
        periods_per_month: f64,
        monthly_discount: f64,
        x: f64,
        t_x: f64,
        observed: f64,
    ) -> Result<f64, FitError> {
        let ends: Vec<f64> = (1..=months)
            .map(|month| f64::from(month) * periods_per_month)
            .collect();
        let by = self.expected_purchases_by(&ends, x, t_x, observed)?;
        let mut total = 0.0;
        let mut before = 0.0;
        for (month, by) in (1..=months).zip(by) {
            total += (by - before) / (1.0 + monthly_discount).powi(month as i32);
            before = by;
        }
        Ok(total)
    }

    /// The first time t ≤ `horizon` by which `purchases` are expected, E[Y(t)] = purchases,
    /// to 1e-6 of the horizon; None when fewer are expected by the horizon.
    pub fn time_to_purchases(
        &self,
        purchases: f64,
        horizon: f64,
        x: f64,
        t_x: f64,
        observed: f64,
    ) -> Result<Option<f64>, FitError> {
        let gap =
            |t| Ok::<f64, FitError>(self.expected_purchases(t, x, t_x, observed)? - purchases);
        let (mut low, mut high) = (0.0, horizon);
        let (mut gap_low, mut gap_high) = (-purchases, gap(horizon)?);
        if gap_high < 0.0 {
            return Ok(None);
        }
        // E[Y(t)] grows with t and bends smoothly: regula falsi with the Illinois rule (the
        // end that stays put has its gap halved) closes in within a few steps where halving
        // the interval takes twenty.
        let mut kept = 0i8;
        for _ in 0..200 {
            if high - low <= horizon * 1e-6 {
                break;
            }
            let t = (high - gap_high * (high - low) / (gap_high - gap_low)).clamp(low, high);
            let at = gap(t)?;
            if at >= 0.0 {
                (high, gap_high) = (t, at);
                if kept == 1 {
                    gap_low *= 0.5;
                }
                kept = 1;
            } else {
                (low, gap_low) = (t, at);
                if kept == -1 {
                    gap_high *= 0.5;
                }
                kept = -1;
            }
            if at == 0.0 {
                break;
            }
        }
        Ok(Some(high))
    }
}

/// The histories arranged for fast likelihood sums: what depends on x alone, on T alone or
/// on t_x alone is computed once per distinct value (a few thousand), not once per history
/// (hundreds of thousands).
struct Prepared {
    xs: Vec<f64>,
    observed: Vec<f64>,
    t_xs: Vec<f64>,
    rows: Vec<Row>,
    customers: f64,
}

struct Row {
    x: usize,
    t_x: usize,
    observed: usize,
    customers: f64,
}

/// The distinct values of `values`, ascending.
fn distinct(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

fn index_of(values: &[f64], value: f64) -> usize {
    values.partition_point(|&v| v < value)
}

impl Prepared {
    fn new(histories: &[History]) -> Prepared {
        let xs = distinct(histories.iter().map(|h| h.x));
        let observed = distinct(histories.iter().map(|h| h.observed));
        let t_xs = distinct(histories.iter().map(|h| h.t_x));
        let rows = histories
            .iter()
            .map(|h| Row {
                x: index_of(&xs, h.x),
                t_x: index_of(&t_xs, h.t_x),
                observed: index_of(&observed, h.observed),
                customers: h.customers,
            })
            .collect();
        Prepared {
            xs,
            observed,
            t_xs,
            rows,
            customers: histories.iter().map(|h| h.customers).sum(),
        }
    }

    /// The negative log-likelihood per customer at log parameters `p`, and its gradient
    /// with respect to them (eq. 6 of the paper and its derivatives).
    fn negative_mean(&self, p: &[f64; 4]) -> (f64, [f64; 4]) {
        let [r, alpha, a, b] = p.map(f64::exp);
        let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
        let shared_ln = ln_gamma(a + b) - ln_gamma(b);
        struct PerX {
            constant: f64,
            d_r: f64,
            d_a: f64,
            d_b: f64,
            ln_b_x_1: f64,
        }
        let per_x: Vec<PerX> = self
            .xs
            .iter()
            .map(|&x| PerX {
                constant: ln_gamma(r + x) - ln_gamma(r)
                    + r * ln_alpha
                    + shared_ln
                    + ln_gamma(b + x)
                    - ln_gamma(a + b + x),
                d_r: digamma(r + x) - digamma(r) + ln_alpha,
                d_a: digamma(a + b) - digamma(a + b + x),
                d_b: digamma(a + b) + digamma(b + x) - digamma(b) - digamma(a + b + x),
                ln_b_x_1: if x > 0.0 { (b + x - 1.0).ln() } else { 0.0 },
            })
            .collect();
        // ln(α + v) and 1/(α + v) for each distinct T and t_x
        let shifted = |values: &[f64]| -> Vec<(f64, f64)> {
            values
                .iter()
                .map(|v| ((alpha + v).ln(), 1.0 / (alpha + v)))
                .collect()
        };
        let (at_observed, at_t_x) = (shifted(&self.observed), shifted(&self.t_xs));
        let mut total = 0.0;
        let mut gradient = [0.0; 4];
        for row in &self.rows {
            let x = self.xs[row.x];
            let k = &per_x[row.x];
            let (ln_t, inv_t) = at_observed[row.observed];
            let a3 = -(r + x) * ln_t;
            let (ll, w3, w4, ln_tx, inv_tx) = if x > 0.0 {
                let (ln_tx, inv_tx) = at_t_x[row.t_x];
                let a4 = ln_a - k.ln_b_x_1 - (r + x) * ln_tx;
                // ln(e^a3 + e^a4), and a3's share of it, from one exponential
                let small = (-(a3 - a4).abs()).exp();
                let ll = a3.max(a4) + small.ln_1p();
                let w3 = if a3 >= a4 {
                    1.0 / (1.0 + small)
                } else {
                    small / (1.0 + small)
                };
                (ll, w3, 1.0 - w3, ln_tx, inv_tx)
            } else {
                (a3, 1.0, 0.0, 0.0, 0.0)
            };
            let n = row.customers;
            total += n * (k.constant + ll);
            let d_r = k.d_r - w3 * ln_t - w4 * ln_tx;
            let d_alpha = r / alpha - (r + x) * (w3 * inv_t + w4 * inv_tx);
            let d_a = k.d_a + w4 / a;
            let d_b = k.d_b - if x > 0.0 { w4 / (b + x - 1.0) } else { 0.0 };
            // with respect to ln θ: θ · ∂/∂θ
            gradient[0] += n * r * d_r;
            gradient[1] += n * alpha * d_alpha;
            gradient[2] += n * a * d_a;
            gradient[3] += n * b * d_b;
        }
        let scale = -1.0 / self.customers;
        (total * scale, gradient.map(|g| g * scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters the paper reports for the CDNOW sample (weeks).
    const CDNOW: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn predictions_for_the_papers_customer() {
        // Fader, Hardie & Lee (2005), section 5: x = 2, t_x = 30.43, T = 38.86 weeks.
        let expected = CDNOW.expected_purchases(39.0, 2.0, 30.43, 38.86).unwrap();
        assert!((expected - 1.226).abs() < 5e-4, "{expected}");
        let alive = CDNOW.p_alive(2.0, 30.43, 38.86);
        assert!((alive - 0.727).abs() < 5e-4, "{alive}");
    }

    #[test]
    fn the_gradient_is_the_likelihoods_slope() {
        let histories = [
            History {
                x: 0.0,
                t_x: 0.0,
                observed: 30.0,
                customers: 5.0,
            },
            History {
                x: 2.0,
                t_x: 10.0,
                observed: 38.0,
                customers: 2.0,
            },
            History {
                x: 7.0,
                t_x: 35.0,
                observed: 36.0,
                customers: 1.0,
            },
        ];
        let data = Prepared::new(&histories);
        super::super::assert_gradient(|p| data.negative_mean(p), [-1.2, 1.4, -0.2, 0.9]);
    }

    #[test]
    fn huge_order_counts_stay_finite() {
        let alive = CDNOW.p_alive(5000.0, 38.0, 38.86);
        assert!(alive > 0.0 && alive <= 1.0, "{alive}");
        let expected = CDNOW.expected_purchases(52.0, 5000.0, 38.8, 38.86).unwrap();
        // About 5000 purchases in 38.86 weeks: roughly 130 a week while active.
        assert!(expected > 1000.0 && expected < 20_000.0, "{expected}");
        let dead = CDNOW.expected_purchases(52.0, 5000.0, 1.0, 38.86).unwrap();
        assert!(dead < 1e-6, "{dead}");
    }

    #[test]
    fn a_purchase_just_before_the_end_of_observation() {
        let expected = CDNOW.expected_purchases(52.0, 0.0, 0.0, 0.0001).unwrap();
        assert!(expected > 0.0 && expected.is_finite(), "{expected}");
        assert_eq!(CDNOW.p_alive(0.0, 0.0, 0.0001), 1.0);
        let soon = CDNOW
            .time_to_purchases(1.0, 52.0, 20.0, 38.0, 38.5)
            .unwrap();
        let soon = soon.expect("a frequent buyer expects one more within a year");
        let at = CDNOW.expected_purchases(soon, 20.0, 38.0, 38.5).unwrap();
        assert!((at - 1.0).abs() < 1e-3, "{soon}: {at}");
        assert_eq!(
            CDNOW.time_to_purchases(1.0, 52.0, 1.0, 2.0, 38.0).unwrap(),
            None
        );
    }
}
