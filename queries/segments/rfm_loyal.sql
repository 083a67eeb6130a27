-- rfm_loyal: customers labelled Loyal on the 10-segment R-F grid (R 3-4, F 4-5: buy often, recently enough; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'Loyal'
