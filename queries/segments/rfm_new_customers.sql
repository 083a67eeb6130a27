-- rfm_new_customers: customers labelled New Customers on the 10-segment R-F grid (R 5, F 1: a first order very recently; see rfm_labels.sql).
SELECT customer_id FROM rfm_labels WHERE rf_segment = 'New Customers'
