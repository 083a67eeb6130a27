-- rfm_champions: customers labelled Champions on the 10-segment R-F grid (R 5, F 4-5: bought very recently and often; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'Champions'
