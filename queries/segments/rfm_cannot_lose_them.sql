-- rfm_cannot_lose_them: customers labelled Cannot Lose Them on the 10-segment R-F grid (R 1-2, F 5: the most frequent buyers, gone quiet; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'Cannot Lose Them'
