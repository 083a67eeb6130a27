-- spend_fit_left_out: repeat buyers whose repeat purchases average zero or less (free orders):
-- they say nothing about what customers spend, so spend_model.sql leaves them out of the
-- Gamma-Gamma fit. Shipped as a warning: a free order must not fail a night, but the run
-- record and the report say how many buyers the spend model did not see.
SELECT customer_id, x, mean_repeat_value
FROM purchase_histories
WHERE x > 0 AND mean_repeat_value <= 0
