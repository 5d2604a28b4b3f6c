-- filled in by the meta implementation
SELECT 1;
