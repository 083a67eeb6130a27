-- rfm_need_attention: customers labelled Need Attention on the 10-segment R-F grid (R 3, F 3: average on both; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'Need Attention'
