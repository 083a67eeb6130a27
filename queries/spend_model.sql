-- spend_model: the Gamma-Gamma model of what customers spend per purchase, fitted on the
-- repeat buyers' average repeat purchase (a customer's first purchase is left out, as in the
-- paper: it often differs). Repeat purchases worth nothing in all (fully discounted) say
-- nothing about spend and are left out. One row: `fit`, a struct of p, q, gamma with
-- log_likelihood, customers and iterations.
SELECT gamma_gamma_fit(x, mean_repeat_value) AS fit
FROM purchase_histories
WHERE x > 0 AND mean_repeat_value > 0
