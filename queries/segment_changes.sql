-- segment_changes: who entered and who left each segment since the previous publication of
-- segment_membership (the latest one dated before $as_of, so a backfill compares with the
-- day before it, not with the newest run). On the first run everyone entered.
WITH now AS (
    SELECT segment, customer_id FROM segment_membership
),
before AS (
    SELECT segment, customer_id FROM previous_segment_membership
)
SELECT CAST($as_of AS DATE) AS as_of, segment, customer_id, 'entered' AS change
FROM (SELECT segment, customer_id FROM now EXCEPT SELECT segment, customer_id FROM before) AS entered
UNION ALL
SELECT CAST($as_of AS DATE) AS as_of, segment, customer_id, 'exited' AS change
FROM (SELECT segment, customer_id FROM before EXCEPT SELECT segment, customer_id FROM now) AS exited
