-- spend_model, pinned: Gamma-Gamma parameters given rather than fitted (see
-- purchase_model_pinned.sql). These are the CDNOW sample's of Fader & Hardie's note, whose
-- spend is in dollars of 1997-98: gamma scales with your order values (the population's
-- expected order value is p·gamma / (q − 1), 31.6 here), so scale it to your shop's.
SELECT named_struct(
           'p', 6.25, 'q', 3.74, 'gamma', 15.44,
           'log_likelihood', CAST(NULL AS DOUBLE),
           'customers', CAST(NULL AS BIGINT),
           'iterations', CAST(NULL AS BIGINT)
       ) AS fit
