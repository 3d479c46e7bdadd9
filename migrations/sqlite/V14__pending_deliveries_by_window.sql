-- The webhook sweeper fails pending deliveries whose retry window is over every poll; with a
-- receiver that hangs, thousands of them are due, and without this index each sweep walked
-- them all (docs/PERFORMANCE.md, "Webhook delivery").
CREATE INDEX webhook_deliveries_pending_by_window ON webhook_deliveries(window_start) WHERE status = 'pending';
