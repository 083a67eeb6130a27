-- purchase_model, pinned: BG/NBD parameters given rather than fitted, for a shop whose
-- history cannot support a fit yet (too few repeat buyers; docs/shipped-pipeline.md, "Predictions"). Point the
-- purchase_model step here and put your numbers in: a fit of a sister shop, or an earlier
-- night's (model_fits). These are the CDNOW sample's of the paper, in weeks: keep
-- model_period_days at 7 with them. The fit's other fields are NULL: nothing was fitted.
SELECT named_struct(
           'r', 0.243, 'alpha', 4.414, 'a', 0.793, 'b', 2.426,
           'log_likelihood', CAST(NULL AS DOUBLE),
           'customers', CAST(NULL AS BIGINT),
           'iterations', CAST(NULL AS BIGINT)
       ) AS fit
