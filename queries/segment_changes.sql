-- segment_changes: who entered and who left each segment since the previous publication of
-- segment_membership (the latest one dated before $as_of, so a backfill compares with the
-- day before it, not with the newest run). On the first run everyone entered.
--
-- Each table holds a (segment, customer) once (segment_membership is built so), so one full
-- join finds the pairs that are in only one of them; EXCEPT would also remove duplicates,
-- which costs an aggregation of each side.
SELECT CAST($as_of AS DATE) AS as_of,
       COALESCE(now.segment, before.segment) AS segment,
       COALESCE(now.customer_id, before.customer_id) AS customer_id,
       CASE WHEN before.customer_id IS NULL THEN 'entered' ELSE 'exited' END AS change
FROM (SELECT segment, customer_id FROM segment_membership) AS now
FULL JOIN (SELECT segment, customer_id FROM previous_segment_membership) AS before
    ON now.segment = before.segment AND now.customer_id = before.customer_id
WHERE now.customer_id IS NULL OR before.customer_id IS NULL
