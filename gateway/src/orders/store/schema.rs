//! The store's schema: the numbered migrations in `migrations/NNNN_name.sql` (each opens with
//! a comment saying what it adds), applied in order once each by [`super::Store::open`].

/// Migrations, applied in order once each; never edit a released one, add a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_orders_alerts.sql"),
    include_str!("migrations/0002_registry.sql"),
    include_str!("migrations/0003_technician_index.sql"),
    include_str!("migrations/0004_edge_box.sql"),
    include_str!("migrations/0005_households_people.sql"),
    include_str!("migrations/0006_requests_idempotency.sql"),
    include_str!("migrations/0007_sla_from.sql"),
    include_str!("migrations/0008_prevention_sweeps.sql"),
    include_str!("migrations/0009_campaigns.sql"),
    include_str!("migrations/0010_delegations.sql"),
    include_str!("migrations/0011_site_type.sql"),
    include_str!("migrations/0012_stock.sql"),
    include_str!("migrations/0013_roads.sql"),
];
