-- rfm_promising: customers labelled Promising on the 10-segment R-F grid (R 4, F 1: one fairly recent order; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'Promising'
