-- The daily cleanup deletes alert marks of old periods; without this index that is a scan of
-- the whole table.
CREATE INDEX usage_alerts_by_period ON usage_alerts(period);
