-- Indexes for a technician's orders and an episode's linked orders.
CREATE INDEX orders_technician ON orders (technician_id, state);
CREATE INDEX orders_episode_links ON alert_links (order_id);
