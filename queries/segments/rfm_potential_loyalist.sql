-- rfm_potential_loyalist: customers labelled Potential Loyalist on the 10-segment R-F grid (R 4-5, F 2-3: recent, on the way to buying often; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'Potential Loyalist'
