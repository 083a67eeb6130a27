-- rfm_hibernating: customers labelled Hibernating on the 10-segment R-F grid (R 1-2, F 1-2: few orders, long ago; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'Hibernating'
