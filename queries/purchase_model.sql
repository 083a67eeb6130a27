-- purchase_model: the BG/NBD model of how often customers buy and when they stop, fitted on
-- every buyer's history (docs/shipped-pipeline.md, "Predictions"). One row: `fit`, a struct of the parameters
-- r, alpha (in periods of $model_period_days days), a, b, with log_likelihood, customers and
-- iterations. The run fails, naming the model, if the history cannot support a fit.
SELECT bgnbd_fit(x, t_x, "T") AS fit
FROM purchase_histories
