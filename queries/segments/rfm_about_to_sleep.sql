-- rfm_about_to_sleep: customers labelled About To Sleep on the 10-segment R-F grid (R 3, F 1-2: fading after few orders; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'About To Sleep'
