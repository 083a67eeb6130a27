-- rfm_at_risk: customers labelled At Risk on the 10-segment R-F grid (R 1-2, F 3-4: bought often, but not for a long time; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'At Risk'
