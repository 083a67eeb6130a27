-- Who entered and who left each segment since the previous publication.
SELECT CAST(segment AS VARCHAR) AS segment,
       COUNT(*) FILTER (WHERE change = 'entered') AS entered,
       COUNT(*) FILTER (WHERE change = 'exited') AS exited
FROM segment_changes
GROUP BY 1
