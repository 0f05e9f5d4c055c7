-- Bone-marrow and MSC material from women aged 50–70 with a femur fracture,
-- per sample type: donors and samples.
SELECT sample_type, COUNT(DISTINCT donor_id) AS donors, COUNT(*) AS samples
FROM samples
WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 70 AND diagnosis LIKE 'S72%'
GROUP BY sample_type
