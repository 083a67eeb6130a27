-- model_fits: one row per fitted model of the night, for anyone checking the predictions:
-- the parameters by name, the log-likelihood at them, how many customers the fit used, and
-- the optimiser's iterations. period_days is the unit of time of BG/NBD's alpha.
SELECT CAST($as_of AS DATE) AS as_of,
       'bgnbd' AS model,
       map(['r', 'alpha', 'a', 'b'], [fit.r, fit.alpha, fit.a, fit.b]) AS parameters,
       fit.log_likelihood AS log_likelihood,
       fit.customers AS customers,
       fit.iterations AS iterations,
       CAST($model_period_days AS DOUBLE) AS period_days
FROM purchase_model
UNION ALL
SELECT CAST($as_of AS DATE),
       'gamma_gamma',
       map(['p', 'q', 'gamma'], [fit.p, fit.q, fit.gamma]),
       fit.log_likelihood,
       fit.customers,
       fit.iterations,
       CAST($model_period_days AS DOUBLE)
FROM spend_model
