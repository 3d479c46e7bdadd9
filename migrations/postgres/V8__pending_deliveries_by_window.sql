-- The sweeper's index; SQLite's V14 says why.
CREATE INDEX webhook_deliveries_pending_by_window ON webhook_deliveries(window_start) WHERE status = 'pending';
