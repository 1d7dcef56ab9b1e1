-- SLA classes: when an order's class changes after creation (a maintenance finding that became
-- urgent, a call task that became a repair), its new clocks run from this time (NULL: from
-- creation).
ALTER TABLE orders ADD COLUMN sla_from_ms INTEGER;
